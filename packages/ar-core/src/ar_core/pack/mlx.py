"""MLX affine layout: uint32 words along the input dim of a [N, K] weight, LSB-first.

2/4/8 bits hold 32/bits values per word; 3/5/6 bits form a contiguous bit stream where 32 values fill `bits` words.
"""

from __future__ import annotations

import torch

from .bitstream import check_bits, pack_last, unpack_last

BITS = (2, 3, 4, 5, 6, 8)


def pack(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack codes [N, K] in [0, 2^bits) into uint32 [N, ceil(K/32)*bits] (K zero-padded to 32)."""
    check_bits(bits, BITS, "mlx")
    return pack_last(q, bits).to(torch.uint32)


def unpack(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Inverse of `pack`: uint32 (or int32) [N, K*bits/32] -> int32 codes [N, k]."""
    check_bits(bits, BITS, "mlx")
    return unpack_last(packed, bits, k).to(torch.int32)
