"""Drop one known, harmless notice printed at every start: torch logs "<enum ...> is an Enum subclass and is now
natively supported by torch.compile ..." twice when transformers' torchao quantizer imports torchao (installed with
gptqmodel), because torchao 0.18 still registers its KernelPreference and ScaleCalculationMode Enums as pytree
constants, which torch 2.13 deprecates. Only those records of the `torch.utils._pytree` logger are dropped."""

from __future__ import annotations

import logging

ENUM_NOTICE = "is an Enum subclass and is now natively supported by torch.compile"


class EnumPytreeNotice(logging.Filter):
    """Rejects the Enum-as-pytree-constant deprecation records; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the Enum notice, True otherwise."""
        return ENUM_NOTICE not in record.getMessage()


def silence_enum_pytree_notices() -> None:
    """Attach the filter to torch's pytree logger (once)."""
    logger = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(f, EnumPytreeNotice) for f in logger.filters):
        logger.addFilter(EnumPytreeNotice())
