"""Shared core of the word codecs: an LSB-first bit stream of `bits`-wide values cut into 32-bit words.

Every 32 values fill exactly `bits` words; value i of a chunk starts at bit i*bits of the chunk. For 2/4/8 bits this
is "32/bits values per word, first value in the least-significant bits"; for 3 bits it is the GPTQ 10/1/10/1/10
word split; for 5/6 bits it is MLX's contiguous stream. Lengths are zero-padded to whole words: a multiple of
32/bits values for 2/4/8 bits, of 32 values otherwise (so L*bits/32 words whenever 32 divides L).

The stream is built a byte at a time with whole-tensor ops (8/bits codes per byte for 2/4/8 bits, 8 codes per
`bits` bytes otherwise) and four bytes are read as one little-endian 32-bit word, so codes are never widened to
int64 on the 2/4/8-bit path. Reading (`unpack_words`) shifts and masks the int32 words themselves, any width.
"""

from __future__ import annotations

import sys

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


def _as_integers(values: torch.Tensor) -> torch.Tensor:
    """Integer codes as given (float codes truncated to int64, as `.to(int64)` does), range not yet checked."""
    return values.to(torch.int64) if values.is_floating_point() else values


def _stream_bytes(values: torch.Tensor, bits: int) -> torch.Tensor:
    """[..., L] codes (L a multiple of 32) -> uint8 [..., L*bits/8]: the LSB-first stream, 8 bits per byte."""
    lead, length = values.shape[:-1], values.shape[-1]
    if 8 % bits == 0:  # 8/bits whole codes per byte, first in the low bits
        codes = values.to(torch.uint8).reshape(*lead, length * bits // 8, 8 // bits)
        out = codes[..., 0].clone(memory_format=torch.contiguous_format)
        for slot in range(1, 8 // bits):
            out |= codes[..., slot] << (slot * bits)
        return out
    # 8 codes fill exactly `bits` bytes: join them in one int64 (8*bits <= 48 bits), then cut it into bytes
    codes = values.to(torch.int64).reshape(*lead, length // 8, 8)
    joined = (codes << torch.arange(0, 8 * bits, bits, device=values.device)).sum(-1, keepdim=True)
    cut = (joined >> torch.arange(0, 8 * bits, 8, device=values.device)) & 0xFF
    return cut.to(torch.uint8).reshape(*lead, length * bits // 8)


def _bytes_to_words(stream: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 4W] (byte j of a word holds its bits 8j..8j+7) -> int64 words [..., W] in [0, 2^32)."""
    lead, nbytes = stream.shape[:-1], stream.shape[-1]
    if sys.byteorder == "big":
        stream = stream.reshape(*lead, nbytes // 4, 4).flip(-1).reshape(*lead, nbytes)
    return stream.contiguous().view(torch.int32).to(torch.int64) & _U32


def pack_last(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack along the last dim ([..., L] -> int64 words [..., packed_words(L, bits)] in [0, 2^32))."""
    values = _as_integers(values)
    _check_range(values, bits)
    length = values.shape[-1]
    pad = -length % WORD_BITS
    if pad:
        values = torch.nn.functional.pad(values, (0, pad))
    return _bytes_to_words(_stream_bytes(values, bits))[..., :packed_words(length, bits)]


def unpack_words(words: torch.Tensor, bits: int) -> torch.Tensor:
    """int32 words [..., W] (W a multiple of `bits` when 32 % bits) -> int32 codes [..., W*32/bits], no int64.

    Value i of a `bits`-word chunk starts at bit i*bits; a value crossing a word boundary joins the high bits of one
    word with the low bits of the next.
    """
    words = words.view(torch.int32) if words.dtype == torch.uint32 else words.to(torch.int32)
    mask = (1 << bits) - 1
    lead, count = words.shape[:-1], words.shape[-1]
    if WORD_BITS % bits == 0:
        shifts = torch.arange(0, WORD_BITS, bits, dtype=torch.int32, device=words.device)
        codes = words.unsqueeze(-1) >> shifts
        return codes.bitwise_and_(mask).reshape(*lead, count * (WORD_BITS // bits))
    chunks = words.reshape(*lead, count // bits, bits)
    pieces, i = [], 0
    while i < WORD_BITS:
        word, shift = divmod(i * bits, WORD_BITS)
        if shift + bits > WORD_BITS:  # the value continues in the low bits of the next word
            low = (chunks[..., word] >> shift) & ((1 << (WORD_BITS - shift)) - 1)
            high = (chunks[..., word + 1] & ((1 << (shift + bits - WORD_BITS)) - 1)) << (WORD_BITS - shift)
            pieces.append((low | high).unsqueeze(-1))
            i += 1
            continue
        inside = min((WORD_BITS - shift) // bits, WORD_BITS - i)  # values that start and end in this word
        shifts = torch.arange(shift, shift + inside * bits, bits, dtype=torch.int32, device=words.device)
        pieces.append((chunks[..., word, None] >> shifts).bitwise_and_(mask))
        i += inside
    return torch.cat(pieces, -1).reshape(*lead, count // bits * WORD_BITS)


def unpack_last(words: torch.Tensor, bits: int, length: int) -> torch.Tensor:
    """Inverse of `pack_last`: int words [..., W] (any signedness) -> int32 values [..., length]."""
    stored = words.shape[-1] * WORD_BITS // bits
    if WORD_BITS % bits and words.shape[-1] % bits:
        raise field_error(ArError, "packed.shape[-1]", words.shape[-1], f"a multiple of bits={bits}")
    if length > stored:
        raise field_error(ArError, "length", length, f"at most {stored} values stored in these words")
    if words.dtype not in (torch.int32, torch.uint32):
        words = to_int32(words.to(torch.int64) & _U32)
    return unpack_words(words, bits)[..., :length]


def to_int32(words: torch.Tensor) -> torch.Tensor:
    """int64 words in [0, 2^32) -> int32 with two's-complement wrap-around (how GPTQ stores them): the cast keeps
    the low 32 bits, in one pass."""
    return words.to(torch.int32)
