"""`auto_gptq` format (quant_method "gptq"), loaded by transformers through optimum + gptqmodel.

Tensors per layer: qweight / qzeros (zero - 1, GPTQ v1) / scales fp16 / g_idx. Mixed bits become GPTQModel
`dynamic` entries (`+:<regex>` with bits/group_size/sym, `-:<regex>` for 16-bit layers); in-block layers left in 16
bits are also excluded through `modules_in_block_to_quantize`.
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.export_request import in_block
from ar_core.layouts import get_layout
from ar_core.qtensor import QuantizedTensor

from .auto_round import AUTOROUND_VERSION
from .checkpoint import SaveContext, Writer, require
from .qconfig import blocks, differing_layers, exact_regex, global_scheme, layer_schemes

GPTQ_KEYS = ("bits", "group_size", "sym")


class AutoGptqFormat(Writer):
    """Writer of the `auto_gptq` format."""

    name = "auto_gptq"
    dtype = torch.float16

    def check_layer(self, name: str, qt: QuantizedTensor) -> None:
        """GPTQ v1 stores zero - 1, so an asym group whose zero point is 0 cannot be written."""
        lowest = int(qt.zero.min())
        require(lowest >= 1, f"zero points of {name}", lowest,
                ">= 1 for auto_gptq (it stores zero - 1); use the auto_round format for this asym model")

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: SaveContext) -> dict[str, torch.Tensor]:
        return get_layout("gptq").to_tensors(qt, g_idx=True)

    def quant_config(self, ctx: SaveContext) -> dict[str, Any]:
        g = global_scheme(ctx)
        prefixes = blocks(ctx)
        schemes = layer_schemes(ctx)
        qc: dict[str, Any] = {"bits": g.bits, "group_size": g.group_size, "sym": g.sym, "data_type": "int",
                              "quant_method": "gptq", "provider": "auto-round", "autoround_version": AUTOROUND_VERSION,
                              "desc_act": False, "true_sequential": False, "damp_percent": 0.01,
                              "lm_head": any(s.is_quantized and not in_block(n, prefixes) for n, s in schemes.items())}
        if prefixes and prefixes != ["model.layers"]:
            qc["block_name_to_quantize"] = ",".join(prefixes)
        dynamic = {}
        for name, entry in differing_layers(ctx).items():
            s = schemes[name]
            if s.is_quantized:
                dynamic[f"+:{exact_regex(name)}"] = {k: getattr(s, k) for k in GPTQ_KEYS}
            elif in_block(name, prefixes):
                dynamic[f"-:{exact_regex(name)}"] = {}
        if dynamic:
            qc["dynamic"] = dynamic
        inside = [n for n in schemes if in_block(n, prefixes)]
        if any(not schemes[n].is_quantized for n in inside):
            rel = sorted({n.split(".", len(p.split(".")) + 1)[-1] for n in inside if schemes[n].is_quantized
                          for p in prefixes if n.startswith(p + ".")})
            qc["modules_in_block_to_quantize"] = [rel]
        return qc


FORMAT = AutoGptqFormat()
