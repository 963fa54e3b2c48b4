"""Round trips and hand-made byte cases for the GPTQ, AWQ and MLX word codecs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_core.errors import ArError
from ar_core.pack import awq, gptq, mlx
from ar_core.pack.bitstream import packed_words


def _codes(seed: int, shape, bits: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1 << bits, shape, generator=g)


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from(gptq.BITS), k=st.integers(1, 100), n=st.integers(1, 40), seed=st.integers(0, 999))
def test_gptq_rows_and_cols_round_trip(bits, k, n, seed):
    q = _codes(seed, (k, n), bits)
    packed = gptq.pack_rows(q, bits)
    assert packed.dtype == torch.int32 and packed.shape == (packed_words(k, bits), n)
    assert torch.equal(gptq.unpack_rows(packed, bits, k), q.to(torch.int32))
    zc = gptq.pack_cols(q, bits)
    assert zc.dtype == torch.int32 and zc.shape == (k, packed_words(n, bits))
    assert torch.equal(gptq.unpack_cols(zc, bits, n), q.to(torch.int32))


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from(mlx.BITS), k=st.integers(1, 100), n=st.integers(1, 10), seed=st.integers(0, 999))
def test_mlx_round_trip(bits, k, n, seed):
    q = _codes(seed, (n, k), bits)
    packed = mlx.pack(q, bits)
    assert packed.dtype == torch.uint32 and packed.shape == (n, packed_words(k, bits))
    assert torch.equal(mlx.unpack(packed, bits, k), q.to(torch.int32))


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 20), chunks=st.integers(1, 6), seed=st.integers(0, 999))
def test_awq_round_trip(k, chunks, seed):
    q = _codes(seed, (k, 8 * chunks), 4)
    packed = awq.pack(q)
    assert packed.dtype == torch.int32 and packed.shape == (k, chunks)
    assert torch.equal(awq.unpack(packed), q.to(torch.int32))


def _u32(x: torch.Tensor) -> list[int]:
    return [int(v) & 0xFFFFFFFF for v in x.flatten()]


def test_gptq_sym4_zero_minus_one_word():
    assert _u32(gptq.pack_cols(torch.full((1, 8), 7), 4)) == [0x77777777]


def test_gptq_first_row_in_lsb_and_sign_wrap():
    q = torch.zeros(8, 1, dtype=torch.int64)
    q[0], q[7] = 0x1, 0xF
    packed = gptq.pack_rows(q, 4)
    assert _u32(packed) == [0xF0000001]
    assert packed.dtype == torch.int32 and int(packed[0, 0]) < 0
    assert _u32(gptq.pack_rows(torch.arange(4).reshape(4, 1), 8)) == [0x03020100]
    assert _u32(gptq.pack_rows(torch.tensor([[1], [2], [3]]), 2)) == [0b111001]


def test_gptq_three_bit_word_split():
    q = torch.zeros(32, 1, dtype=torch.int64)
    q[10] = 0b111  # straddles word0 bits 30..31 and word1 bit 0
    assert _u32(gptq.pack_rows(q, 3)) == [0xC0000000, 0x1, 0x0]
    q[:] = 0
    q[21] = 0b111  # low bit in word1 bit 31, high bits in word2 bits 0..1
    assert _u32(gptq.pack_rows(q, 3)) == [0x0, 0x80000000, 0x3]
    q[:] = 0
    q[0], q[11], q[22] = 5, 6, 3
    assert _u32(gptq.pack_rows(q, 3)) == [5, 6 << 1, 3 << 2]


def test_awq_interleave_bytes():
    q = torch.arange(8).reshape(1, 8)
    assert _u32(awq.pack(q)) == [0x75316420]
    assert _u32(awq.pack(torch.full((1, 8), 8))) == [0x88888888]


def test_mlx_matches_mlx_quantize_layout():
    mx = pytest.importorskip("mlx.core")
    import numpy as np

    w = torch.randn(4, 64)
    for bits in (3, 4, 6):
        wq, scales, biases = mx.quantize(mx.array(w.numpy()), group_size=32, bits=bits)
        ours = mlx.unpack(torch.from_numpy(np.array(wq).astype(np.int64)), bits, 64)
        ref = mx.dequantize(wq, scales, biases, group_size=32, bits=bits)
        s = torch.from_numpy(np.array(scales)).repeat_interleave(32, 1)
        b = torch.from_numpy(np.array(biases)).repeat_interleave(32, 1)
        assert torch.allclose(s * ours + b, torch.from_numpy(np.array(ref)), atol=1e-5)
        assert torch.equal(mlx.pack(ours, bits).to(torch.int64), torch.from_numpy(np.array(wq).astype(np.int64)))


def test_bad_input_names_field():
    with pytest.raises(ArError, match="bits=5"):
        gptq.pack_rows(torch.zeros(32, 1), 5)
    with pytest.raises(ArError, match="codes"):
        gptq.pack_rows(torch.full((32, 1), 16), 4)
    with pytest.raises(ArError, match="out_features"):
        awq.pack(torch.zeros(2, 12))


def test_word_counts_pad_to_whole_words():
    assert [packed_words(32, b) for b in (2, 3, 4, 5, 6, 8)] == [2, 3, 4, 5, 6, 8]
    assert packed_words(8, 4) == 1 and packed_words(9, 4) == 2 and packed_words(8, 3) == 3
    assert gptq.pack_rows(torch.ones(40, 2), 4).shape == (5, 2)
