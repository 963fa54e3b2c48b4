"""The vectorised word codecs are bit-exact: against a Python-integer bit stream (the layout's definition), and
against digests of what the earlier per-value-loop implementation wrote for the same codes."""

from __future__ import annotations

import hashlib
import random

import pytest
import torch

from ar_core.pack import awq, gptq, mlx
from ar_core.pack.bitstream import pack_last, packed_words, unpack_last

U32 = (1 << 32) - 1
ALL_BITS = (2, 3, 4, 5, 6, 8)

# sha256 (first 16 hex digits) of the words the loop implementation packed from `_codes(bits, (24, 200), bits)`
LOOP_DIGESTS = {2: "b0c8dd7fe2293f74", 3: "21167abf06cf077d", 4: "07b56e5cf2575f02", 5: "477588b4adde4542",
                6: "f60632b71d6485c9", 8: "f63ac5df0aca7298"}
LOOP_AWQ_DIGEST = "72464062cf935b94"  # awq.pack(_codes(4, (24, 200), 99))


def _codes(bits: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random codes from Python's `random` (stable across torch versions)."""
    rng = random.Random(seed)
    return torch.tensor([rng.getrandbits(bits) for _ in range(shape[0] * shape[1])]).reshape(shape)


def _digest(words: torch.Tensor) -> str:
    return hashlib.sha256(repr((words.to(torch.int64) & U32).tolist()).encode()).hexdigest()[:16]


def _reference_words(row: list[int], bits: int) -> list[int]:
    """One row packed by definition: value i at bit i*bits of one big integer, cut into 32-bit words."""
    stream = sum(v << (i * bits) for i, v in enumerate(row))
    return [(stream >> (32 * w)) & U32 for w in range(packed_words(len(row), bits))]


def _reference_values(words: list[int], bits: int, length: int) -> list[int]:
    stream = sum((w & U32) << (32 * i) for i, w in enumerate(words))
    return [(stream >> (i * bits)) & ((1 << bits) - 1) for i in range(length)]


@pytest.mark.parametrize("bits", ALL_BITS)
def test_pack_last_matches_the_loop_implementation(bits):
    assert _digest(pack_last(_codes(bits, (24, 200), bits), bits)) == LOOP_DIGESTS[bits]


def test_awq_matches_the_loop_implementation():
    q = _codes(4, (24, 200), 99)
    assert _digest(awq.pack(q)) == LOOP_AWQ_DIGEST
    assert torch.equal(awq.unpack(awq.pack(q)), q.to(torch.int32))


@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("length", [1, 7, 31, 32, 33, 100])
def test_pack_and_unpack_follow_the_bit_stream_definition(bits, length):
    q = _codes(bits, (3, length), 1000 * bits + length)
    words = pack_last(q, bits)
    assert words.dtype == torch.int64
    assert words.tolist() == [_reference_words(row, bits) for row in q.tolist()]
    random_words = torch.tensor(_codes(32, (2, bits * 4), length).tolist(), dtype=torch.int64).to(torch.int32)
    stored = random_words.shape[-1] * 32 // bits
    assert unpack_last(random_words, bits, stored).tolist() == [
        _reference_values(row, bits, stored) for row in random_words.tolist()]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.float32])
def test_code_dtypes_and_strided_inputs_pack_the_same(dtype):
    q = _codes(4, (40, 64), 7)
    expected = pack_last(q, 4)
    strided = q.to(dtype).t().contiguous().t()
    assert not strided.is_contiguous() and torch.equal(pack_last(strided, 4), expected)
    offset = torch.cat([torch.zeros(40, 1, dtype=dtype), q.to(dtype)], dim=1)[:, 1:]  # storage offset 1
    assert torch.equal(pack_last(offset, 4), expected)
    assert torch.equal(pack_last(q.to(dtype).reshape(2, 20, 64), 4).reshape(40, -1), expected)


@pytest.mark.parametrize("bits", gptq.BITS)
def test_gptq_and_mlx_round_trip_through_the_vectorised_core(bits):
    q = _codes(bits, (96, 48), bits).to(torch.uint8)
    assert torch.equal(gptq.unpack_rows(gptq.pack_rows(q, bits), bits, 96), q.to(torch.int32))
    assert torch.equal(gptq.unpack_cols(gptq.pack_cols(q, bits), bits, 48), q.to(torch.int32))
    assert torch.equal(mlx.unpack(mlx.pack(q, bits), bits, 48), q.to(torch.int32))
