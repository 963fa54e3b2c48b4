"""`fp8` format (FP8_BLOCK): float8_e4m3fn `weight` plus `weight_scale_inv` per 128x128 block, quant_method
"auto-round" with `weight_block_size` and `ignored_layers` (the DeepSeek/HF fine-grained FP8 layout; despite its name
`weight_scale_inv` holds the dequant multiplier amax/448, shape [ceil(N/128), ceil(K/128)])."""

from __future__ import annotations

from typing import Any

import torch

from ar_core.errors import SchemeError, field_error
from ar_core.layouts import get_layout
from ar_core.qtensor import QuantizedTensor

from .auto_round import AUTOROUND_VERSION
from .checkpoint import SaveContext, Writer
from .qconfig import global_scheme, layer_schemes


class Fp8Format(Writer):
    """Writer of the `fp8` (block-wise FP8) format."""

    name = "fp8"
    dtype = torch.bfloat16

    def check(self, schemes) -> None:
        """FP8 block schemes with one block size across the checkpoint."""
        super().check(schemes)
        sizes = {s.group_size for s in schemes.values() if s.is_quantized}
        if len(sizes) > 1:
            raise field_error(SchemeError, "group_size", sorted(sizes), "one block size for every fp8 layer")

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: SaveContext) -> dict[str, torch.Tensor]:
        return get_layout("fp8").to_tensors(qt, torch.float32, scale_name="weight_scale_inv")

    def quant_config(self, ctx: SaveContext) -> dict[str, Any]:
        g = global_scheme(ctx)
        return {"quant_method": "auto-round", "fmt": "e4m3", "activation_scheme": "dynamic",
                "weight_block_size": list(g.group_size), "bits": 8, "data_type": "fp",
                "group_size": list(g.group_size), "sym": True, "autoround_version": AUTOROUND_VERSION,
                "ignored_layers": [n for n, s in layer_schemes(ctx).items() if not s.is_quantized]}


FORMAT = Fp8Format()
