"""AWQ GEMM layout (WQLinear_GEMM): 4-bit codes packed along the output dim, 8 per int32, interleaved.

Nibble i (bits 4i..4i+3) of a word holds column ORDER[i] of its 8-column chunk, ORDER = [0, 2, 4, 6, 1, 3, 5, 7].
Used for both qweight [K, N/8] and qzeros [G, N/8] (raw zeros).
"""

from __future__ import annotations

import torch

from ..errors import ArError, field_error
from .bitstream import to_int32

ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def pack(q: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes [K, N] (N % 8 == 0) into int32 [K, N/8] with the AWQ interleave."""
    if q.shape[-1] % 8:
        raise field_error(ArError, "out_features", q.shape[-1], "a multiple of 8 for the AWQ layout")
    q = q.to(torch.int64)
    if q.numel() and (int(q.min()) < 0 or int(q.max()) > 15):
        raise field_error(ArError, "codes", (int(q.min()), int(q.max())), "values in [0, 15] for AWQ 4-bit")
    chunks = q.reshape(*q.shape[:-1], -1, 8)
    words = torch.zeros(chunks.shape[:-1], dtype=torch.int64, device=q.device)
    for nibble, col in enumerate(ORDER):
        words |= chunks[..., col] << (4 * nibble)
    return to_int32(words)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack`: int32 [K, N/8] -> int32 codes [K, N]."""
    words = packed.to(torch.int64) & 0xFFFFFFFF
    out = torch.empty(*words.shape, 8, dtype=torch.int64, device=packed.device)
    for nibble, col in enumerate(ORDER):
        out[..., col] = (words >> (4 * nibble)) & 0xF
    return out.reshape(*words.shape[:-1], -1).to(torch.int32)
