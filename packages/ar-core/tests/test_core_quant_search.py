"""Optimized-RTN searches: imatrix layout, zero handling, and never doing worse than plain RTN."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_core.errors import ArError
from ar_core.quant import fake_quantize, get_data_type, quantize
from ar_core.quant.groups import to_groups
from ar_core.quant.int_types import IntType
from ar_core.quant.search import group_imatrix, search_int_sym_scale, search_weights, weighted_error
from ar_core.scheme import QuantScheme

S = QuantScheme
SEARCHED = [S(bits=2, group_size=16), S(bits=3, group_size=32), S(bits=4, group_size=32), S(bits=5, group_size=-1),
            S(bits=4, group_size=32, data_type="mx_fp"), S(bits=8, group_size=32, data_type="mx_fp"),
            S(bits=4, group_size=32, data_type="mx_fp_rceil"), S(bits=4, group_size=32, data_type="mx_int"),
            S(bits=4, group_size=16, data_type="nv_fp")]


def test_group_imatrix_pads_with_zeros():
    wg = to_groups(torch.zeros(3, 5), 2)
    assert group_imatrix(torch.arange(1.0, 6.0), wg).tolist() == [[[1, 2], [3, 4], [5, 0]]]


def test_group_imatrix_per_tensor_repeats_per_row():
    wg = torch.zeros(1, 1, 6)
    assert group_imatrix(torch.tensor([1.0, 2.0]), wg).tolist() == [[[1, 2, 1, 2, 1, 2]]]


def test_group_imatrix_rejects_wrong_length():
    with pytest.raises(ArError, match="imatrix"):
        group_imatrix(torch.ones(7), to_groups(torch.zeros(2, 12), 4))


def test_search_weights_zero_handling():
    w = torch.tensor([[1.0, -2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5]])
    wg = to_groups(w, 4)
    imatrix = torch.tensor([0.0, 0.0, 0.0, 2.0, 1.0, 0.0, 3.0, 2.0])
    weights = search_weights(wg, imatrix, bits=3)
    assert weights[0, 0].tolist() == [1.0, 2.0, 3.0, 4.0]  # 3 of 4 zero: |w| fallback (<= 3 bits)
    assert weights[0, 1].tolist() == [1.0, 2.0, 3.0, 2.0]  # one zero: the mean of the others
    w4 = search_weights(wg, imatrix, bits=4)
    assert torch.allclose(w4[0, 0], w[0, :4].abs() + (30.0 / 32) ** 0.5)
    assert search_weights(wg, None, 4) is None


def test_search_weights_ignore_padding():
    wg = to_groups(torch.ones(1, 6), 4)
    weights = search_weights(wg, torch.tensor([1.0, 0.0, 1.0, 1.0, 2.0, 4.0]), bits=4)
    assert weights[0, 1].tolist() == [2.0, 4.0, 0.0, 0.0]


def _weighted_group_loss(scheme, w, fake, imatrix):
    dt = get_data_type(scheme.data_type)
    wg, fg = dt.group(w, scheme), dt.group(fake, scheme)
    err = (fg - wg).pow(2)
    if imatrix is not None:
        err = err * group_imatrix(imatrix, wg)
    return err.sum(-1)


@pytest.mark.parametrize("scheme", SEARCHED, ids=lambda s: f"{s.data_type}{s.bits}g{s.group_size}")
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 1000), cols=st.integers(8, 90), weighted=st.booleans())
def test_search_never_worse_than_rtn(scheme, seed, cols, weighted):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, cols, generator=g) * torch.rand(1, cols, generator=g) * 0.1
    imatrix = torch.rand(cols, generator=g) ** 4 + 1e-3 if weighted else None
    rtn = fake_quantize(w, scheme)
    opt = fake_quantize(w, scheme, search=True, imatrix=imatrix)
    loss_rtn = _weighted_group_loss(scheme, w, rtn, imatrix)
    loss_opt = _weighted_group_loss(scheme, w, opt, imatrix)
    assert (loss_opt <= loss_rtn * (1 + 1e-6)).all()


@pytest.mark.parametrize("scheme", [S(bits=4, group_size=32), S(bits=4, group_size=32, data_type="mx_fp"),
                                    S(bits=4, group_size=16, data_type="nv_fp")], ids=["int4", "mxfp4", "nvfp4"])
def test_search_improves_on_average(scheme):
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(3)) * 0.02
    rtn = (fake_quantize(w, scheme) - w).pow(2).sum()
    opt = (fake_quantize(w, scheme, search=True) - w).pow(2).sum()
    assert opt < 0.97 * rtn


def test_imatrix_steers_the_int_search():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(5)) * 0.05
    imatrix = torch.ones(64)
    imatrix[:8] = 100.0  # the first channels dominate
    scheme = S(bits=3, group_size=64)
    plain = fake_quantize(w, scheme, search=True)
    steered = fake_quantize(w, scheme, search=True, imatrix=imatrix)
    heavy = lambda f: (f - w)[:, :8].pow(2).sum()  # noqa: E731
    assert heavy(steered) < heavy(plain)


def test_int_sym_search_scale_candidates_are_signed_and_cast():
    w = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
    wg = to_groups(w, 32)
    scale = search_int_sym_scale(wg, S(bits=4, group_size=32))
    gmax = torch.take_along_dim(wg, wg.abs().argmax(-1, keepdim=True), -1)
    assert torch.equal(torch.sign(scale), -torch.sign(gmax))
    assert torch.equal(scale, scale.half().float())


def test_search_with_asym_int_and_fp8_is_plain_rtn():
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    for scheme in (S(bits=4, group_size=32, sym=False), S(bits=8, group_size=-1, data_type="fp"),
                   S(bits=8, group_size=32)):
        assert torch.equal(quantize(w, scheme, search=True).codes, quantize(w, scheme).codes)


def test_nvfp_search_equals_the_full_multiplier_sweep():
    from ar_core.quant.nvfp import nvfp_global_scale, quantize_fp4
    from ar_core.quant.search import NVFP_MULTIPLIERS, nvfp_block_scale, weighted_error

    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(4)) * torch.logspace(-4, 0, 64)
    wg = to_groups(w, 16)
    gs, amax = nvfp_global_scale(wg), wg.abs().amax(-1, keepdim=True)
    sweep = torch.stack([weighted_error(quantize_fp4(wg, nvfp_block_scale(amax * m, gs), gs)[1], wg, None)
                         for m in NVFP_MULTIPLIERS]).min(0).values
    found = weighted_error(to_groups(fake_quantize(w, S(bits=4, group_size=16, data_type="nv_fp"), search=True), 16),
                           wg, None)
    assert torch.equal(found, torch.minimum(sweep, weighted_error(to_groups(
        fake_quantize(w, S(bits=4, group_size=16, data_type="nv_fp")), 16), wg, None)))


@pytest.mark.parametrize("scheme", [S(bits=2, group_size=16), S(bits=3, group_size=32), S(bits=4, group_size=32)])
def test_tuning_start_reproduces_opt_rtn_and_max_scale_moves_it(scheme):
    torch.manual_seed(0)
    w, imatrix = torch.randn(8, 64), torch.rand(64) + 0.1
    dt = get_data_type(scheme.data_type)
    start = dt.tuning_start(dt.group(w, scheme), scheme, imatrix)
    rows, groups, _ = dt.group(w, scheme).shape
    ones, v = torch.ones(rows, groups), torch.zeros_like(dt.group(w, scheme))
    searched = quantize(w, scheme, search=True, imatrix=imatrix)
    started = quantize(w, scheme, v=v, min_scale=ones, max_scale=ones, **start)
    assert torch.equal(started.codes, searched.codes) and torch.equal(started.scale, searched.scale)
    assert torch.equal(fake_quantize(w, scheme, v=v, max_scale=ones, **start), searched.dequantize())
    wider = quantize(w, scheme, max_scale=torch.full((rows, groups), 1.5), **start)  # beyond 1: allowed up to 2
    assert torch.allclose(wider.scale, searched.scale * 1.5, rtol=1e-3)  # fp16 scales
    capped = quantize(w, scheme, max_scale=torch.full((rows, groups), 3.0), **start)
    assert torch.allclose(capped.scale, searched.scale * 2.0, rtol=1e-3)


def test_tuning_start_is_empty_where_no_searched_start_exists():
    w = torch.randn(4, 32)
    for scheme in (S(bits=4, group_size=32, sym=False), S(bits=8, group_size=32)):
        dt = get_data_type(scheme.data_type)
        assert dt.tuning_start(dt.group(w, scheme), scheme, None) == {}


@pytest.mark.parametrize("preset", ["GGUF:Q4_K_S", "GGUF:Q2_K_S", "GGUF:Q6_K", "GGUF:Q3_K_S"])
def test_gguf_tuning_start_reproduces_the_searched_quantization(preset):
    from ar_core.presets import parse_scheme

    scheme = parse_scheme(preset)
    torch.manual_seed(1)
    w, imatrix = torch.randn(4, 512), torch.rand(512) + 0.1
    dt = get_data_type(scheme.data_type)
    wg = dt.group(w, scheme)
    start = dt.tuning_start(wg, scheme, imatrix)
    searched = quantize(w, scheme, search=True, imatrix=imatrix)
    started = quantize(w, scheme, v=torch.zeros_like(wg), **start)
    assert torch.equal(started.codes, searched.codes) and torch.equal(started.scale, searched.scale)
    assert all(torch.equal(started.extras[k], searched.extras[k]) for k in searched.extras)


def _exhaustive_int_sym_scale(wg, scheme, imatrix):
    """The full grid the coarse-to-fine search replaced: every k, scored with divisions."""
    from ar_core.quant.base import SCALE_THRESHOLD, cast_scale
    from ar_core.quant.int_types import clamp_magnitude

    nmax, weights = 2 ** (scheme.bits - 1), search_weights(wg, imatrix, scheme.bits)
    best = IntType().scale_zero(wg, scheme)[0]
    loss = lambda s: weighted_error((wg / s).round().clamp(-nmax, nmax - 1) * s, wg, weights)  # noqa: E731
    best_loss = loss(best)
    gmax = torch.take_along_dim(wg, wg.abs().argmax(-1, keepdim=True), -1)
    ks, step = (range(-90, 91), 0.01) if scheme.bits == 2 else (range(-100, 101), 0.0075 * nmax)
    for k in ks:
        cand = cast_scale(clamp_magnitude(-gmax / (nmax - step * k), SCALE_THRESHOLD[scheme.scale_dtype]), scheme)
        cl = loss(cand)
        best, best_loss = torch.where((cl < best_loss)[..., None], cand, best), torch.minimum(cl, best_loss)
    return best


@pytest.mark.parametrize("bits,gs", [(4, 128), (4, 32), (2, 64), (3, 32), (8, 128)])
@pytest.mark.parametrize("heavy", [False, True])
def test_coarse_to_fine_int_search_is_no_worse_than_the_full_grid(bits, gs, heavy):
    g = torch.Generator().manual_seed(bits * 1000 + gs)
    w = torch.randn(64, 512, generator=g) * 0.02
    if heavy:
        w = w * (torch.randn(64, 512, generator=g) ** 3).abs().clamp(max=20)
    imatrix = torch.rand(512, generator=g) ** 2
    scheme = S(bits=bits, group_size=gs)
    wg = IntType().group(w, scheme)
    weights = search_weights(wg, imatrix, bits)

    def layer_error(scale):
        return float(weighted_error(IntType().encode(wg, scheme, init_scale=scale)[4], wg, weights).sum())

    assert layer_error(search_int_sym_scale(wg, scheme, imatrix)) <= layer_error(
        _exhaustive_int_sym_scale(wg, scheme, imatrix))
