"""`auto_awq` format (quant_method "awq", GEMM version), loaded by transformers through gptqmodel.

4-bit only, one scheme for every quantized layer (AWQ configs cannot express mixed bits); 16-bit layers are listed in
`modules_to_not_convert`. Each layer needs in % group_size == 0 and out % 8 == 0.
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.errors import SchemeError, field_error
from ar_core.layouts import get_layout
from ar_core.qtensor import QuantizedTensor

from .auto_round import AUTOROUND_VERSION
from .checkpoint import SaveContext, Writer, require
from .qconfig import blocks, global_scheme, layer_schemes


class AutoAwqFormat(Writer):
    """Writer of the `auto_awq` format."""

    name = "auto_awq"
    dtype = torch.float16

    def check(self, schemes) -> None:
        """4-bit int layers with a single (group_size, sym) across the checkpoint."""
        super().check(schemes)
        distinct = {(s.group_size, s.sym) for s in schemes.values() if s.is_quantized}
        if len(distinct) > 1:
            raise field_error(SchemeError, "schemes (group_size, sym)", sorted(distinct, key=str),
                              "one group_size and sym for every layer in auto_awq; use auto_round or auto_gptq")

    def check_layer(self, name: str, qt: QuantizedTensor) -> None:
        gs = qt.scheme.effective_group_size(qt.in_features)
        require(qt.in_features % gs == 0, f"in_features of {name}", qt.in_features,
                f"a multiple of group_size {gs} for auto_awq")
        require(qt.out_features % 8 == 0, f"out_features of {name}", qt.out_features, "a multiple of 8 for auto_awq")

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: SaveContext) -> dict[str, torch.Tensor]:
        return get_layout("awq").to_tensors(qt)

    def quant_config(self, ctx: SaveContext) -> dict[str, Any]:
        g = global_scheme(ctx)
        skipped = [n for n, s in layer_schemes(ctx).items() if not s.is_quantized]
        return {"bits": g.bits, "group_size": g.group_size, "sym": g.sym, "zero_point": not g.sym, "data_type": "int",
                "quant_method": "awq", "version": "gemm", "provider": "auto-round",
                "autoround_version": AUTOROUND_VERSION, "modules_to_not_convert": skipped,
                "to_quant_block_names": ",".join(blocks(ctx))}


FORMAT = AutoAwqFormat()
