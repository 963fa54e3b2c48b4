"""`fake` format: the dequantized (QDQ) weights in the model's dtype, no quantization config; holds every scheme."""

from __future__ import annotations

import torch

from ar_core.qtensor import QuantizedTensor

from .checkpoint import SaveContext, Writer


class FakeFormat(Writer):
    """Writer of the `fake` format (research and accuracy checks; loads as a plain 16-bit model)."""

    name = "fake"

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: SaveContext) -> dict[str, torch.Tensor]:
        return {"weight": qt.dequantize(torch.float32).to(ctx.dtype)}

    def quant_config(self, ctx: SaveContext) -> None:
        return None


FORMAT = FakeFormat()
