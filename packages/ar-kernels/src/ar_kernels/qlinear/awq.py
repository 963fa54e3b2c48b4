"""AWQ GEMM layout (4-bit): qweight int32 [K, N/8] and qzeros int32 [G, N/8] interleaved, scales fp16 [G, N]."""

from __future__ import annotations

import torch

from ar_core.errors import ArError, field_error
from ar_core.pack import awq as codec

from .base import QuantLinear, describe, expect, group_length, per_row_groups


def _check_scheme(scheme, out_features: int) -> None:
    if scheme.data_type != "int" or scheme.bits != 4:
        raise field_error(ArError, "scheme", f"{scheme.data_type} {scheme.bits}-bit", "AWQ holds int 4-bit only")
    if out_features % 8:
        raise field_error(ArError, "out_features", out_features, "a multiple of 8 for the AWQ layout")


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
    def from_quantized(cls, qt, bias=None, packing="awq"):
        """Pack 4-bit int codes into the AWQ layout."""
        out, k = qt.shape
        _check_scheme(qt.scheme, out)
        zero = per_row_groups(qt.zero, out).t()
        scales = per_row_groups(qt.scale, out).t().contiguous().to(torch.float16)
        return cls(k, out, qt.scheme, "awq", codec.pack(qt.codes.t()), codec.pack(zero), scales, bias)

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="awq", layer="?"):
        _check_scheme(scheme, out_features)
        what = describe(scheme)
        groups = -(-in_features // group_length(scheme, in_features))
        qweight = expect(layer, tensors, "qweight", (in_features, out_features // 8), (torch.int32,), what)
        qzeros = expect(layer, tensors, "qzeros", (groups, out_features // 8), (torch.int32,), what)
        scales = expect(layer, tensors, "scales", (groups, out_features), None, what)
        return cls(in_features, out_features, scheme, "awq", qweight, qzeros, scales, tensors.get("bias"))
