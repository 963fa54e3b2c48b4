"""GPTQ-order int layout: qweight/qzeros int32, fp16 scales, optional g_idx (auto_gptq, auto_round, gptqmodel).

packing "gptq" stores zero-1 (v1, auto_round:auto_gptq and quant_method gptq), "gptq_v2" raw zeros (auto_round,
auto_round:gptqmodel); the tensors are those of `ar_core.layouts.ints.GPTQLayout`. W[k, n] = scales[g(k), n] *
(q[k, n] - zero[g(k), n]) with g(k) = g_idx[k] or k // group.
"""

from __future__ import annotations

import torch

from ar_core.pack import gptq as codec

from .base import QuantLinear, group_length


class GPTQLinear(QuantLinear):
    """Torch reference for the GPTQ-order layouts (dequantize in float32, matmul in the input dtype)."""

    packings = ("gptq", "gptq_v2")

    def __init__(self, in_features, out_features, scheme, packing, qweight, qzeros, scales, g_idx=None, bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        self.register_buffer("qweight", qweight)
        self.register_buffer("qzeros", qzeros)
        self.register_buffer("scales", scales)
        self.register_buffer("g_idx", g_idx)

    @property
    def group_size(self) -> int:
        """Rows of the input dim per group."""
        return group_length(self.scheme, self.in_features)

    def codes_and_zeros(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpacked codes int32 [K, N] and true zero points int32 [G, N]."""
        bits = self.scheme.bits
        q = codec.unpack_rows(self.qweight, bits, self.in_features)
        z = self.layout.decode_zeros(codec.unpack_cols(self.qzeros, bits, self.out_features), bits)
        return q, z

    def group_index(self) -> torch.Tensor:
        """Group of each input row ([K] int64): g_idx when stored, else k // group_size."""
        if self.g_idx is not None:
            return self.g_idx.to(torch.int64)
        return torch.arange(self.in_features, device=self.qweight.device) // self.group_size

    def dequantize_weight(self) -> torch.Tensor:
        q, z = self.codes_and_zeros()
        g = self.group_index()
        w = self.scales.float()[g] * (q.float() - z.float()[g])
        return w.t()

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing, layer="?"):
        t = cls._read(tensors, in_features, out_features, scheme, packing, layer)
        return cls(in_features, out_features, scheme, packing, t["qweight"], t["qzeros"], t["scales"],
                   t.get("g_idx"), tensors.get("bias"))
