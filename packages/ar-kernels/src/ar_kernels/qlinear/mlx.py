"""MLX affine layout: weight uint32 [N, K*bits/32], scales and biases [N, K/G]; w = scales * q + biases."""

from __future__ import annotations

import torch

from ar_core.errors import ArError, field_error
from ar_core.pack import mlx as codec
from ar_core.pack.bitstream import packed_words

from .base import QuantLinear, describe, expect, group_length, per_row_groups


def _check_scheme(scheme, in_features: int) -> None:
    if scheme.data_type != "int" or scheme.bits not in codec.BITS:
        raise field_error(ArError, "scheme", f"{scheme.data_type} {scheme.bits}-bit",
                          f"the MLX layout holds int {list(codec.BITS)}-bit")
    gs = group_length(scheme, in_features)
    if in_features % gs:
        raise field_error(ArError, "group_size", scheme.group_size, f"a divisor of in_features={in_features} (MLX)")


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
    def from_quantized(cls, qt, bias=None, packing="mlx"):
        """Pack int codes into MLX words; biases = -scale * zero."""
        out, k = qt.shape
        _check_scheme(qt.scheme, k)
        scale = per_row_groups(qt.scale, out).float()
        biases = -scale * per_row_groups(qt.zero, out).float()
        return cls(k, out, qt.scheme, "mlx", codec.pack(qt.codes, qt.scheme.bits), scale.to(torch.float16),
                   biases.to(torch.float16), bias)

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="mlx", layer="?"):
        _check_scheme(scheme, in_features)
        what = describe(scheme)
        groups = in_features // group_length(scheme, in_features)
        weight = expect(layer, tensors, "weight", (out_features, packed_words(in_features, scheme.bits)),
                        (torch.uint32, torch.int32), what)
        scales = expect(layer, tensors, "scales", (out_features, groups), None, what)
        biases = expect(layer, tensors, "biases", (out_features, groups), None, what)
        return cls(in_features, out_features, scheme, "mlx", weight.view(torch.uint32) if weight.dtype == torch.int32
                   else weight, scales, biases, tensors.get("bias"))
