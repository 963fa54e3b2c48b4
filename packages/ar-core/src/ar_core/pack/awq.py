"""AWQ GEMM layout (WQLinear_GEMM): 4-bit codes packed along the output dim, 8 per int32, interleaved.

Nibble i (bits 4i..4i+3) of a word holds column ORDER[i] of its 8-column chunk, ORDER = [0, 2, 4, 6, 1, 3, 5, 7].
Used for both qweight [K, N/8] and qzeros [G, N/8] (raw zeros).
"""

from __future__ import annotations

import torch

from ..errors import ArError, field_error
from .bitstream import pack_last, to_int32, unpack_last

ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
_COLUMN_NIBBLE = tuple(ORDER.index(col) for col in range(8))  # the nibble holding each column


def pack(q: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes [K, N] (N % 8 == 0) into int32 [K, N/8] with the AWQ interleave."""
    if q.shape[-1] % 8:
        raise field_error(ArError, "out_features", q.shape[-1], "a multiple of 8 for the AWQ layout")
    if q.numel() and (int(q.min()) < 0 or int(q.max()) > 15):
        raise field_error(ArError, "codes", (int(q.min()), int(q.max())), "values in [0, 15] for AWQ 4-bit")
    interleaved = q.reshape(*q.shape[:-1], q.shape[-1] // 8, 8)[..., list(ORDER)].reshape(q.shape)
    return to_int32(pack_last(interleaved, 4))


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack`: int32 [K, N/8] -> int32 codes [K, N]."""
    nibbles = unpack_last(packed, 4, packed.shape[-1] * 8)
    chunks = nibbles.reshape(*packed.shape, 8)[..., list(_COLUMN_NIBBLE)]
    return chunks.reshape(*packed.shape[:-1], -1).to(torch.int32)
