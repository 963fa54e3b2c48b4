"""PyTorch's own CPU int4 kernel: `aten._convert_weight_to_int4pack_for_cpu` (repack, once) and
`aten._weight_int4pack_mm_for_cpu` (x @ W^T).

The kernel takes unsigned 4-bit codes q [N, K] repacked into uint8 [N, K/2] and one (scale, zero) pair per group
and output row, [K/G, N, 2] in the activation's dtype, and computes w = (q - 8) * scale + zero; an integer zero
point z is therefore zero = scale * (8 - z). It needs G in 32/64/128/256 dividing K and N a multiple of 16. Its
vectorised (AVX512/AVX2) path runs bfloat16 activations; float16 and float32 run a scalar loop that is 10-100x slower.

Repacked layout (read back by `unpack`, checked against the running torch by `layout_known`): rows go in blocks of
64 outputs, then one tail block of N % 64; each block stores, per input k, one byte per output pair -- outputs
(j, j + 32) in a 64-row block, (2j, 2j + 1) in the tail -- low nibble first.
"""

from __future__ import annotations

import functools

import torch

GROUP_SIZES = (32, 64, 128, 256)
_BLOCK = 64


def available() -> bool:
    """Whether this torch build has the CPU int4 ops."""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(
        torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


def refusal(bits: int, group: int, in_features: int, out_features: int) -> str | None:
    """Why the int4 kernel cannot run a layer (None when it can); `group` is the effective group length."""
    if not available():
        return f"torch {torch.__version__} has no aten._weight_int4pack_mm_for_cpu"
    if bits != 4:
        return f"bits={bits} (the int4 kernel takes 4-bit)"
    if group not in GROUP_SIZES:
        return f"group_size={group} (the int4 kernel takes {list(GROUP_SIZES)})"
    if in_features % group:
        return f"in_features={in_features} is not a multiple of group_size={group}"
    if out_features % 16:
        return f"out_features={out_features} is not a multiple of 16"
    if not layout_known(out_features):
        return f"torch {torch.__version__} repacks int4 weights in a layout this version does not read"
    return None


def repack(codes: torch.Tensor) -> torch.Tensor:
    """Codes [N, K] in [0, 16) -> the kernel's uint8 [N, K/2]."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 1)


def block_rows(n: int) -> int:
    """Output rows per block of the repacked layout for a run of n rows: 64, or n itself for a short tail."""
    return _BLOCK if n >= _BLOCK else n


def unpack_blocks(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Repacked bytes of n rows (a multiple of 64, or one tail block of n < 64) -> int32 codes [B, K, rows/B].

    codes[b, k, j] is the code of output row b * block_rows(n) + j at input k: each block comes out already
    transposed (K-major), the layout `x @ W^T` wants.
    """
    width = block_rows(n)
    b = packed.reshape(n // width, k, width // 2).to(torch.int32)
    low, high = b & 15, b.bitwise_right_shift_(4)
    if width == _BLOCK:
        return torch.cat([low, high], -1)
    return torch.stack([low, high], -1).reshape(n // width, k, width)


def unpack(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Inverse of `repack`: uint8 [N, K/2] -> int32 codes [N, K] (whole-tensor ops, see the module's layout)."""
    flat = packed.reshape(-1)
    full = n - n % _BLOCK
    parts = [unpack_blocks(flat[:full * k // 2], full, k)] if full else []
    if n % _BLOCK:
        parts.append(unpack_blocks(flat[full * k // 2:], n - full, k))
    return torch.cat([p.transpose(1, 2).reshape(-1, k) for p in parts])


@functools.lru_cache(maxsize=None)
def layout_known(n: int) -> bool:
    """Whether `unpack` inverts this torch's `repack` for N = n outputs (probed once per n on a [n, 4] tensor)."""
    probe = torch.randint(0, 16, (n, 4), dtype=torch.int32, generator=torch.Generator().manual_seed(n))
    try:
        return bool(torch.equal(unpack(repack(probe), n, 4), probe))
    except RuntimeError:
        return False


def scales_and_zeros(scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Per-group scale [N, G] and integer zero point [N, G] -> float32 [G, N, 2] (scale, scale * (8 - zero))."""
    scale = scale.float()
    return torch.stack([scale, scale * (8 - zero.float())], -1).transpose(0, 1).contiguous()


def matmul(x: torch.Tensor, packed: torch.Tensor, group: int, scale_zero: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ W^T -> [M, N] in x's dtype; `scale_zero` [G, N, 2] must have x's dtype."""
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x.contiguous(), packed, group, scale_zero)
