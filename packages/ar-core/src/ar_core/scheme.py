"""`QuantScheme`: a validated, immutable description of how one layer is quantized."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import SchemeError, field_error
from .registry import get_data_type

GroupSize = int | tuple[int, int]

ACT_DATA_TYPES = ("int", "mx_fp", "mx_fp_rceil", "mx_int", "nv_fp", "nv_fp4_with_static_gs", "fp", "float")
SCALE_DTYPES = ("float16", "bfloat16", "float32")


@dataclass(frozen=True)
class QuantScheme:
    """How a layer's weights (and optionally activations) are quantized.

    group_size: >0 elements per group along the input dim; -1 one group per output channel; 0 one group for the
    whole tensor; (m, n) 2-D blocks (FP8 only). `bits >= 16` means the layer stays in high precision.
    """

    bits: int = 4
    group_size: GroupSize = 128
    sym: bool = True
    data_type: str = "int"
    act_bits: int = 16
    act_group_size: GroupSize | None = None
    act_sym: bool | None = None
    act_data_type: str | None = None
    act_dynamic: bool | None = None
    super_bits: int | None = None
    super_group_size: int | None = None
    scale_dtype: str = "float16"
    gguf: str | None = None  # llama.cpp type or mix name (e.g. "q4_k_m") when the scheme comes from a GGUF preset

    def __post_init__(self) -> None:
        validate(self)

    @property
    def is_quantized(self) -> bool:
        """True when the weights are stored in fewer than 16 bits."""
        return self.bits < 16

    @property
    def quantizes_activations(self) -> bool:
        """True when activations are quantized too (W*A8, MXFP4, NVFP4, ...)."""
        return self.act_bits < 16

    def replace(self, **changes: Any) -> "QuantScheme":
        """A copy with `changes` applied and validated again."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise field_error(SchemeError, "scheme field", sorted(unknown)[0], f"one of {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view (tuples become lists, act_* dropped when activations stay 16-bit)."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        if self.act_bits >= 16:
            for k in ("act_group_size", "act_sym", "act_data_type", "act_dynamic"):
                d.pop(k)
        return {k: v for k, v in d.items() if v is not None}

    def effective_group_size(self, in_features: int) -> int:
        """Group length along the input dimension for a layer with `in_features` inputs (tensor-wide: in_features)."""
        gs = self.group_size
        if isinstance(gs, tuple):
            return gs[1]
        if gs == -1 or gs == 0 or gs > in_features:
            return in_features
        return gs


def field_names() -> list[str]:
    """Names of every QuantScheme field."""
    return [f.name for f in dataclasses.fields(QuantScheme)]


def _check_group(field: str, gs: Any) -> None:
    if isinstance(gs, bool):
        raise field_error(SchemeError, field, gs, "an int (>0, -1 per channel, 0 per tensor) or an (m, n) tuple")
    if isinstance(gs, tuple):
        if len(gs) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in gs):
            raise field_error(SchemeError, field, gs, "a tuple of two positive ints, e.g. (128, 128)")
        return
    if not isinstance(gs, int) or gs < -1:
        raise field_error(SchemeError, field, gs, "an int >0, -1 (per channel) or 0 (per tensor)")


def validate(s: QuantScheme) -> None:
    """Raise SchemeError when `s` holds an impossible combination; called on every construction."""
    if not isinstance(s.bits, int) or isinstance(s.bits, bool):
        raise field_error(SchemeError, "bits", s.bits, "an int")
    data_type = get_data_type(s.data_type)
    _check_group("group_size", s.group_size)
    if not isinstance(s.sym, bool):
        raise field_error(SchemeError, "sym", s.sym, "True or False")
    if s.scale_dtype not in SCALE_DTYPES:
        raise field_error(SchemeError, "scale_dtype", s.scale_dtype, f"one of {SCALE_DTYPES}")
    if s.bits >= 16:
        if s.bits not in (16, 32):
            raise field_error(SchemeError, "bits", s.bits, "2-8 for quantized layers, 16 or 32 for unquantized")
    elif s.bits not in data_type.bits:
        raise field_error(SchemeError, "bits", s.bits, f"data_type {s.data_type!r} holds bits {list(data_type.bits)}")
    if isinstance(s.group_size, tuple) and not data_type.block_groups:
        raise field_error(SchemeError, "group_size", s.group_size, "2-D block groups only with data_type 'fp' (FP8)")
    data_type.check(s)
    if not isinstance(s.act_bits, int) or s.act_bits not in (2, 3, 4, 6, 8, 16, 32):
        raise field_error(SchemeError, "act_bits", s.act_bits, "one of 2, 3, 4, 6, 8, 16, 32")
    if s.act_bits < 16:
        if s.act_data_type not in ACT_DATA_TYPES:
            raise field_error(SchemeError, "act_data_type", s.act_data_type, f"one of {ACT_DATA_TYPES}")
        if s.act_group_size is not None:
            _check_group("act_group_size", s.act_group_size)
