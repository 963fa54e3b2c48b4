"""GPTQ word order (auto_gptq, auto_round, gptqmodel): int32 words, first value in the least-significant bits.

qweight packs along the input dim K (`pack_rows`: [K, N] -> [ceil(K/32)*bits, N]); qzeros packs along the output
dim N (`pack_cols`: [G, N] -> [G, ceil(N/32)*bits]). 3-bit uses the 10/1/10/1/10 split of 32 values over 3 words.
The codec stores what it is given: callers choose zero-1 (v1) or raw zeros (v2).
"""

from __future__ import annotations

import torch

from .bitstream import check_bits, pack_last, to_int32, unpack_last

BITS = (2, 3, 4, 8)


def pack_rows(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack codes [K, N] in [0, 2^bits) along K into int32 [ceil(K/32)*bits, N] (K zero-padded to 32)."""
    check_bits(bits, BITS, "gptq")
    return to_int32(pack_last(q.t(), bits)).t().contiguous()


def unpack_rows(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Inverse of `pack_rows`: int32 [K*bits/32, N] -> int32 codes [k, N]."""
    check_bits(bits, BITS, "gptq")
    return unpack_last(packed.t(), bits, k).t().contiguous().to(torch.int32)


def pack_cols(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack values [G, N] along N into int32 [G, ceil(N/32)*bits] (N zero-padded to 32)."""
    check_bits(bits, BITS, "gptq")
    return to_int32(pack_last(z, bits))


def unpack_cols(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of `pack_cols`: int32 [G, N*bits/32] -> int32 [G, n]."""
    check_bits(bits, BITS, "gptq")
    return unpack_last(packed, bits, n).to(torch.int32)
