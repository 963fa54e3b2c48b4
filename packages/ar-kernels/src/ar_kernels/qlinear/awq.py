"""AWQ GEMM layout (4-bit): qweight int32 [K, N/8] and qzeros int32 [G, N/8] interleaved, scales fp16 [G, N]
(the tensors of `ar_core.layouts.ints.AWQLayout`)."""

from __future__ import annotations

import torch

from ar_core.pack import awq as codec

from .base import QuantLinear, group_length


class AWQLinear(QuantLinear):
    """Torch reference for the AWQ GEMM layout (raw zeros)."""

    packings = ("awq",)

    def __init__(self, in_features, out_features, scheme, packing, qweight, qzeros, scales, bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        self.register_buffer("qweight", qweight)
        self.register_buffer("qzeros", qzeros)
        self.register_buffer("scales", scales)

    def dequantize_weight(self) -> torch.Tensor:
        q = codec.unpack(self.qweight).float()
        z = codec.unpack(self.qzeros).float()
        g = torch.arange(self.in_features, device=q.device) // group_length(self.scheme, self.in_features)
        return (self.scales.float()[g] * (q - z[g])).t()

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="awq", layer="?"):
        t = cls._read(tensors, in_features, out_features, scheme, packing, layer)
        return cls(in_features, out_features, scheme, "awq", t["qweight"], t["qzeros"], t["scales"],
                   tensors.get("bias"))
