"""Element grids of the small float / MX integer formats: exact values, codes and rounding."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_core.pack import fp4
from ar_core.quant.fp_grids import E2M1, E2M3, E4M3, MXINT2, MXINT4, MXINT8, decode_elements, encode_elements, \
    round_to_grid, to_e4m3_ste

ALL = (E2M1, E2M3, E4M3, MXINT2, MXINT4, MXINT8)


def test_fp4_grid_and_codes():
    assert E2M1.magnitudes.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert E2M1.sign_bit == 8
    codes = torch.arange(16, dtype=torch.uint8)
    assert torch.equal(decode_elements(codes, E2M1), fp4.decode_e2m1(codes))


def test_fp6_e2m3_grid():
    mags = E2M3.magnitudes
    assert mags.numel() == 32 and mags.max().item() == 7.5
    assert mags[:8].tolist() == [k / 8 for k in range(8)]  # subnormals step 1/8
    assert mags[8:16].tolist() == [1 + k / 8 for k in range(8)]
    assert E2M3.sign_bit == 32


def test_e4m3_grid_matches_torch_float8():
    torch_vals = torch.arange(127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    assert torch.equal(E4M3.magnitudes, torch_vals)
    assert E4M3.magnitudes.max().item() == 448.0 and E4M3.sign_bit == 128


def test_mx_int_grids():
    assert MXINT4.magnitudes.tolist() == [k / 4 for k in range(8)]
    assert MXINT8.magnitudes.tolist() == [k / 64 for k in range(128)]
    assert MXINT2.magnitudes.tolist() == [0.0, 1.0]
    assert (MXINT2.sign_bit, MXINT4.sign_bit, MXINT8.sign_bit) == (2, 8, 128)


def test_every_representable_value_round_trips():
    for fmt in ALL:
        vals = torch.cat([fmt.magnitudes, -fmt.magnitudes[1:]])
        assert torch.equal(round_to_grid(vals, fmt), vals), fmt.name
        codes = encode_elements(vals, fmt)
        assert torch.equal(decode_elements(codes, fmt), vals), fmt.name
        assert len(set(codes.tolist())) == vals.numel()
        assert int(codes.max()) < 2 * fmt.sign_bit


def test_ties_round_to_even():
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -5.0])
    assert round_to_grid(x, E2M1).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -0.0, -4.0]
    assert round_to_grid(torch.tensor([0.375, 0.625, -1.125]), MXINT4).tolist() == [0.5, 0.5, -1.0]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), log_span=st.floats(-12, 8.7))
def test_e4m3_rounding_equals_torch_cast(seed, log_span):
    x = torch.randn(512, generator=torch.Generator().manual_seed(seed)) * 2.0**log_span
    x = x.clamp(-448, 448)
    assert torch.equal(round_to_grid(x, E4M3), x.to(torch.float8_e4m3fn).float())
    assert torch.equal(to_e4m3_ste(x), x.to(torch.float8_e4m3fn).float())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), fmt=st.sampled_from(ALL))
def test_rounding_picks_a_nearest_grid_value(seed, fmt):
    x = (torch.rand(256, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * fmt.max_norm
    q = round_to_grid(x, fmt)
    grid = torch.cat([fmt.magnitudes, -fmt.magnitudes])
    nearest = (x[:, None] - grid[None]).abs().min(dim=1).values
    assert torch.equal((q - x).abs(), nearest)
    assert torch.equal(decode_elements(encode_elements(q, fmt), fmt), q)


def test_rounding_is_straight_through():
    x = torch.tensor([0.3, 1.1, 2.6], requires_grad=True)
    round_to_grid(x, E2M1).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
