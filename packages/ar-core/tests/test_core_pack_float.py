"""FP4 nibble / E8M0 and FP8 storage codecs."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_core.pack import fp4, fp8


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), k=st.integers(1, 70), seed=st.integers(0, 999))
def test_nibbles_round_trip(n, k, seed):
    codes = torch.randint(0, 16, (n, k), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)
    packed = fp4.pack_nibbles(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (n, -(-k // 2))
    assert torch.equal(fp4.unpack_nibbles(packed, k), codes)


def test_nibble_order_low_is_even_column():
    assert fp4.pack_nibbles(torch.tensor([[1, 2, 0xF, 0]])).tolist() == [[0x21, 0x0F]]


def test_e2m1_decode_table():
    codes = torch.arange(16)
    vals = fp4.decode_e2m1(codes)
    assert vals[:8].tolist() == list(fp4.E2M1_VALUES)
    assert vals[8:].tolist() == [-v for v in fp4.E2M1_VALUES]


@settings(max_examples=40, deadline=None)
@given(exps=st.lists(st.integers(-127, 127), min_size=1, max_size=20))
def test_e8m0_round_trip(exps):
    scale = torch.exp2(torch.tensor(exps, dtype=torch.float32))
    code = fp4.e8m0_encode(scale)
    assert code.dtype == torch.uint8 and code.tolist() == [e + 127 for e in exps]
    assert torch.equal(fp4.e8m0_decode(code), scale)


def test_e8m0_clamps_and_nan():
    assert fp4.e8m0_encode(torch.tensor([0.0, 2.0**-140])).tolist() == [0, 0]
    assert torch.isnan(fp4.e8m0_decode(torch.tensor([255], dtype=torch.uint8))).all()


def test_fp8_bits_round_trip():
    w = (torch.randn(5, 7) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    bits = fp8.to_bits(w)
    assert bits.dtype == torch.uint8
    assert torch.equal(fp8.to_float8(bits).float(), w.float())
    assert fp8.decode_e4m3_scale(fp8.encode_e4m3_scale(torch.tensor([1000.0, 0.5]))).tolist() == [448.0, 0.5]
