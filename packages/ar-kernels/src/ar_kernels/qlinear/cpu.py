"""`CPUIntLinear`: group-quantized int layers on CPU, repacked once at load for the fastest path torch offers.

4-bit layers the int4 kernel takes (qlinear.int4pack) keep only its repacked bytes and per-group (scale, zero)
pairs; bfloat16 activations run the kernel, float16 and float32 activations a dequantize + matmul in their dtype
(the kernel's float32 loop is scalar, and float16 through its bfloat16 path would lose float16's precision). Every other layer (2/3/8-bit, odd group sizes)
keeps its codes as an LSB-first int32 stream along the input dim ([N, K*bits/32], ar_core.pack.bitstream) with
float32 scales and offsets -scale*zero [N, G], and dequantizes with int32 shifts and masks and group-broadcast
scales, no int64 copy and no full-size gather. An act-order g_idx is turned into a permutation of the input dim
at load (x is permuted instead of the weight). `cache_weight` keeps the dequantized weight per dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from ar_core.errors import ArError, field_error
from ar_core.layouts import per_row_groups
from ar_core.pack import awq as awq_codec
from ar_core.pack.bitstream import pack_last, to_int32, unpack_words

from . import int4pack
from .awq import AWQLinear
from .base import QuantLinear, group_length
from .gptq import GPTQLinear

BITS = (2, 3, 4, 8)
_CHUNK_ELEMENTS = 1 << 18  # weight elements dequantized per step (1 MiB of float32)


def kernel_refusal(scheme, in_features: int, out_features: int) -> str | None:
    """Why the int4 kernel cannot run the layer (None when it can)."""
    return int4pack.refusal(scheme.bits, group_length(scheme, in_features), in_features, out_features)


def kernel_path(scheme, in_features: int, out_features: int) -> str:
    """Which path CPUIntLinear runs for a layer: the int4 kernel, or vectorised unpack and why."""
    why = kernel_refusal(scheme, in_features, out_features)
    if why is None:
        return "int4 kernel (aten._weight_int4pack_mm_for_cpu, bf16 compute; fp32 input: dequantize + matmul)"
    return f"vectorised unpack + matmul: {why}"


def _check_scheme(scheme) -> None:
    if scheme.data_type != "int" or scheme.bits not in BITS:
        raise field_error(ArError, "scheme", f"{scheme.data_type} {scheme.bits}-bit",
                          f"the cpu backend runs int {list(BITS)}-bit")


def _sorted_groups(g_idx: torch.Tensor | None, in_features: int, group: int) -> tuple[torch.Tensor | None, bool]:
    """(input permutation that makes groups contiguous or None when already so, whether groups are regular)."""
    if g_idx is None:
        return None, True
    plain = torch.arange(in_features) // group
    g = g_idx.to(torch.int64).cpu()
    if torch.equal(g, plain):
        return None, True
    perm = torch.argsort(g, stable=True)
    return perm, bool(torch.equal(g[perm], plain))


class CPUIntLinear(QuantLinear):
    """Int 2/3/4/8-bit layer for CPU: int4 kernel where it applies, vectorised unpack otherwise."""

    packings = ("gptq", "gptq_v2", "awq")

    def __init__(self, in_features, out_features, scheme, packing, codes, scale, zero, perm=None, bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        _check_scheme(scheme)
        self.group = group_length(scheme, in_features)
        self.path = kernel_path(scheme, in_features, out_features)
        self.uses_kernel = kernel_refusal(scheme, in_features, out_features) is None
        self.register_buffer("perm", perm)
        if self.uses_kernel:
            self.register_buffer("weight_int4", int4pack.repack(codes))
            self.register_buffer("scale_zero", int4pack.scales_and_zeros(scale, zero))
        else:
            self.register_buffer("stream", to_int32(pack_last(codes.to(torch.int32), scheme.bits)))
            self.register_buffer("row_scales", scale.float().contiguous())
            self.register_buffer("row_offsets", (-scale.float() * zero.float()).contiguous())
        self._kernel_sz: torch.Tensor | None = None
        self._dense: dict[torch.dtype, torch.Tensor] = {}

    def _row_ranges(self) -> list[tuple[int, int]]:
        """Output row ranges dequantized one at a time: ~1 MiB of float32 each, starting on the int4 row blocks;
        the int4 layout's short tail block (N % 64 rows) is a range of its own."""
        n, block = self.out_features, int4pack.block_rows(self.out_features)
        step = max(block, _CHUNK_ELEMENTS // self.in_features // block * block)
        full = n - n % block if self.uses_kernel else n
        ranges = [(s, min(full, s + step)) for s in range(0, full, step)]
        return ranges + ([(full, n)] if full < n else [])

    def _stored_rows_t(self, start: int, stop: int) -> torch.Tensor:
        """float32 W^T of output rows start:stop as blocks [B, K, rows/B], input order as stored (see `perm`)."""
        rows, k, g = stop - start, self.in_features, self.group
        groups = -(-k // g)
        if self.uses_kernel:  # start is on a 64-row block: the rows' bytes form a repacked tensor of their own
            q = int4pack.unpack_blocks(self.weight_int4.view(-1)[start * k // 2:stop * k // 2], rows, k)
            blocks, width = q.shape[0], q.shape[2]
            sz = self.scale_zero[:, start:stop].reshape(groups, blocks, 1, width, 2).transpose(0, 1)
            w = q.view(blocks, groups, g, width).float()
            w.mul_(sz[..., 0]).add_(sz[..., 1] - 8 * sz[..., 0])
            return w.view(blocks, k, width)
        q = unpack_words(self.stream[start:stop], self.scheme.bits)[:, :k]
        if groups * g != k:
            q = nn.functional.pad(q, (0, groups * g - k))
        w = q.view(rows, groups, g).float()
        w.mul_(self.row_scales[start:stop].unsqueeze(-1)).add_(self.row_offsets[start:stop].unsqueeze(-1))
        return w.view(rows, groups * g)[:, :k].t().unsqueeze(0)

    def _stored_weight(self) -> torch.Tensor:
        """float32 [N, K] in stored input order."""
        return torch.cat([self._stored_rows_t(a, b).transpose(1, 2).reshape(b - a, self.in_features)
                          for a, b in self._row_ranges()])

    def dequantize_weight(self) -> torch.Tensor:
        w = self._stored_weight()
        if self.perm is None:
            return w
        out = torch.empty_like(w)
        out[:, self.perm] = w
        return out

    def _dequantized_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] @ W^T, dequantizing ~1 MiB of weight rows at a time (cache-sized, reused allocations, float32)
        and multiplying them in x's dtype; with `cache_weight`, one matmul in x's dtype with the kept weight."""
        if self.cache_weight:
            w = self._dense.get(x.dtype)
            if w is None:
                w = self._dense[x.dtype] = self._stored_weight().to(x.dtype)
            return x @ w.t()
        y = x.new_empty(x.shape[0], self.out_features)
        for start, stop in self._row_ranges():  # float32 inputs in float32; 16-bit ones in their dtype, as consumers do
            part = torch.matmul(x, self._stored_rows_t(start, stop).to(x.dtype))  # [B, M, rows/B]
            y[:, start:stop] = part.transpose(0, 1).reshape(x.shape[0], stop - start)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x @ W^T (+ bias) in x's dtype: the int4 kernel for bfloat16 inputs, else dequantize + matmul."""
        x = self.quantized_input(x)
        if self.perm is not None:
            x = x.index_select(-1, self.perm)
        flat = x.reshape(-1, self.in_features)
        if self.uses_kernel and not self.cache_weight and x.dtype == torch.bfloat16:
            if self._kernel_sz is None:
                self._kernel_sz = self.scale_zero.to(torch.bfloat16)
            y = int4pack.matmul(flat.to(torch.bfloat16), self.weight_int4, self.group, self._kernel_sz).to(x.dtype)
        else:
            y = self._dequantized_matmul(flat)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, path={self.path}"

    @classmethod
    def from_quantized(cls, qt, bias=None, packing="gptq_v2"):
        """Repack a QuantizedTensor record (codes [N, K], scale and zero [N, G])."""
        _check_scheme(qt.scheme)
        out, k = qt.shape
        return cls(k, out, qt.scheme, packing, qt.codes, per_row_groups(qt.scale, out),
                   per_row_groups(qt.zero, out), None, bias)

    @classmethod
    def from_reference(cls, ref: QuantLinear) -> QuantLinear:
        """Repack a torch-reference GPTQ/AWQ module; one whose g_idx groups are irregular is returned unchanged."""
        if isinstance(ref, AWQLinear):
            codes, zero, perm = awq_codec.unpack(ref.qweight).t(), awq_codec.unpack(ref.qzeros).t(), None
        else:
            q, z = ref.codes_and_zeros()
            codes, zero = q.t(), z.t()
            perm, regular = _sorted_groups(ref.g_idx, ref.in_features, ref.group_size)
            if not regular:
                return ref
            if perm is not None:
                codes = codes[:, perm]
        return cls(ref.in_features, ref.out_features, ref.scheme, ref.packing, codes, ref.scales.t(), zero, perm,
                   ref.bias)

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing, layer="?"):
        _check_scheme(scheme)
        ref_cls = AWQLinear if packing == "awq" else GPTQLinear
        return cls.from_reference(ref_cls.from_tensors(tensors, in_features, out_features, scheme, packing, layer))


CPU_MODULES = {p: CPUIntLinear for p in CPUIntLinear.packings}
