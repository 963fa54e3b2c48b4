"""Shared core of the word codecs: an LSB-first bit stream of `bits`-wide values cut into 32-bit words.

Every 32 values fill exactly `bits` words; value i of a chunk starts at bit i*bits of the chunk. For 2/4/8 bits this
is "32/bits values per word, first value in the least-significant bits"; for 3 bits it is the GPTQ 10/1/10/1/10
word split; for 5/6 bits it is MLX's contiguous stream. Lengths are zero-padded to whole words: a multiple of
32/bits values for 2/4/8 bits, of 32 values otherwise (so L*bits/32 words whenever 32 divides L).
"""

from __future__ import annotations

import torch

from ..errors import ArError, field_error

WORD_BITS = 32
_U32 = (1 << 32) - 1


def check_bits(bits: int, allowed: tuple[int, ...], codec: str) -> None:
    """Raise ArError unless `bits` is one of `allowed` for `codec`."""
    if bits not in allowed:
        raise field_error(ArError, "bits", bits, f"the {codec} codec packs {list(allowed)}")


def _check_range(values: torch.Tensor, bits: int) -> None:
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= 1 << bits):
        raise field_error(ArError, "codes", (int(values.min()), int(values.max())),
                          f"values in [0, {(1 << bits) - 1}] for {bits}-bit packing")


def packed_words(length: int, bits: int) -> int:
    """Number of 32-bit words that hold `length` values of `bits` bits (after padding to whole words)."""
    unit = WORD_BITS // bits if WORD_BITS % bits == 0 else WORD_BITS
    return -(-length // unit) * unit * bits // WORD_BITS


def pack_last(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack along the last dim ([..., L] -> int64 words [..., packed_words(L, bits)] in [0, 2^32))."""
    values = values.to(torch.int64)
    _check_range(values, bits)
    length = values.shape[-1]
    pad = -length % WORD_BITS
    if pad:
        values = torch.nn.functional.pad(values, (0, pad))
    chunks = values.reshape(*values.shape[:-1], -1, WORD_BITS)
    words = torch.zeros(*chunks.shape[:-1], bits, dtype=torch.int64, device=values.device)
    for i in range(WORD_BITS):
        word, shift = divmod(i * bits, WORD_BITS)
        v = chunks[..., i]
        words[..., word] |= (v << shift) & _U32
        if shift + bits > WORD_BITS:
            words[..., word + 1] |= v >> (WORD_BITS - shift)
    return words.reshape(*values.shape[:-1], -1)[..., :packed_words(length, bits)]


def unpack_last(words: torch.Tensor, bits: int, length: int) -> torch.Tensor:
    """Inverse of `pack_last`: int words [..., W] (any signedness) -> int64 values [..., length]."""
    words = words.to(torch.int64) & _U32
    stored = words.shape[-1] * WORD_BITS // bits
    if WORD_BITS % bits and words.shape[-1] % bits:
        raise field_error(ArError, "packed.shape[-1]", words.shape[-1], f"a multiple of bits={bits}")
    pad = -words.shape[-1] % bits
    if pad:
        words = torch.nn.functional.pad(words, (0, pad))
    chunks = words.reshape(*words.shape[:-1], -1, bits)
    mask = (1 << bits) - 1
    out = torch.empty(*chunks.shape[:-1], WORD_BITS, dtype=torch.int64, device=words.device)
    for i in range(WORD_BITS):
        word, shift = divmod(i * bits, WORD_BITS)
        v = chunks[..., word] >> shift
        if shift + bits > WORD_BITS:
            v = v | (chunks[..., word + 1] << (WORD_BITS - shift))
        out[..., i] = v & mask
    out = out.reshape(*words.shape[:-1], -1)
    if length > stored:
        raise field_error(ArError, "length", length, f"at most {stored} values stored in these words")
    return out[..., :length]


def to_int32(words: torch.Tensor) -> torch.Tensor:
    """int64 words in [0, 2^32) -> int32 with two's-complement wrap-around (how GPTQ stores them)."""
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)
