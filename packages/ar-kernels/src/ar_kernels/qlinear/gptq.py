"""GPTQ-order int layout: qweight/qzeros int32, fp16 scales, optional g_idx (auto_gptq, auto_round, gptqmodel).

packing "gptq" stores zero-1 (v1, auto_round:auto_gptq and quant_method gptq), "gptq_v2" raw zeros (auto_round,
auto_round:gptqmodel). W[k, n] = scales[g(k), n] * (q[k, n] - zero[g(k), n]) with g(k) = g_idx[k] or k // group.
"""

from __future__ import annotations

import torch

from ar_core.errors import ArError, CheckpointError, field_error
from ar_core.pack import gptq as codec
from ar_core.pack.bitstream import packed_words

from .base import QuantLinear, describe, expect, group_length, per_row_groups

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _check_scheme(scheme, packing: str) -> None:
    if scheme.data_type != "int" or scheme.bits not in codec.BITS:
        raise field_error(ArError, "scheme", f"{scheme.data_type} {scheme.bits}-bit",
                          f"packing {packing!r} holds int {list(codec.BITS)}-bit")


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
        z = codec.unpack_cols(self.qzeros, bits, self.out_features)
        if self.packing == "gptq":
            z = (z + 1) & ((1 << bits) - 1)
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
    def from_quantized(cls, qt, bias=None, packing="gptq", g_idx: bool = False):
        """Pack int codes/scale/zero into qweight/qzeros/scales (zero-1 for "gptq"); `g_idx` adds k // group."""
        scheme = qt.scheme
        _check_scheme(scheme, packing)
        out, k = qt.shape
        bits = scheme.bits
        zero = per_row_groups(qt.zero, out).to(torch.int64)
        if packing == "gptq":
            zero = (zero - 1) & ((1 << bits) - 1)
        elif packing != "gptq_v2":
            raise field_error(ArError, "packing", packing, "'gptq' or 'gptq_v2'")
        scales = per_row_groups(qt.scale, out).t().contiguous().to(torch.float16)
        gi = None
        if g_idx:
            gi = (torch.arange(k) // scheme.effective_group_size(k)).to(torch.int32)
        return cls(k, out, scheme, packing, codec.pack_rows(qt.codes.t(), bits),
                   codec.pack_cols(zero.t(), bits), scales, gi, bias)

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing, layer="?"):
        _check_scheme(scheme, packing)
        bits, what = scheme.bits, describe(scheme)
        groups = -(-in_features // group_length(scheme, in_features))
        qweight = expect(layer, tensors, "qweight", (packed_words(in_features, bits), out_features),
                         (torch.int32,), what)
        qzeros = expect(layer, tensors, "qzeros", (groups, packed_words(out_features, bits)), (torch.int32,), what)
        scales = expect(layer, tensors, "scales", (groups, out_features), _FLOATS, what)
        g_idx = tensors.get("g_idx")
        if g_idx is not None:
            g_idx = expect(layer, tensors, "g_idx", (in_features,), None, what).to(torch.int32)
            if g_idx.numel() and (int(g_idx.min()) < 0 or int(g_idx.max()) >= groups):
                raise CheckpointError(f"layer {layer!r}: g_idx values lie outside [0, {groups}) groups{what}")
        return cls(in_features, out_features, scheme, packing, qweight, qzeros, scales, g_idx, tensors.get("bias"))
