"""MLX affine layout: weight uint32 [N, K*bits/32], scales and biases [N, K/G]; w = scales * q + biases (the
tensors of `ar_core.layouts.ints.MLXLayout`)."""

from __future__ import annotations

import torch

from ar_core.pack import mlx as codec

from .base import QuantLinear, group_length


class MLXLinear(QuantLinear):
    """Torch reference for the MLX affine layout."""

    packings = ("mlx",)

    def __init__(self, in_features, out_features, scheme, packing, weight, scales, biases, bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("biases", biases)

    def dequantize_weight(self) -> torch.Tensor:
        q = codec.unpack(self.weight, self.scheme.bits, self.in_features).float()
        gs = group_length(self.scheme, self.in_features)
        scales = self.scales.float().repeat_interleave(gs, dim=1)
        biases = self.biases.float().repeat_interleave(gs, dim=1)
        return scales * q + biases

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="mlx", layer="?"):
        t = cls._read(tensors, in_features, out_features, scheme, packing, layer)
        return cls(in_features, out_features, scheme, "mlx", t["weight"].view(torch.uint32), t["scales"],
                   t["biases"], tensors.get("bias"))
