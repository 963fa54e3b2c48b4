"""GGUF k-quant data types (int_asym_dq / int_sym_dq): double quantization, gradients, searches, imatrix."""

import pytest
import torch

from ar_core.errors import SchemeError
from ar_core.presets import gguf_scheme
from ar_core.quant import fake_quantize, get_data_type, quantize, to_groups
from ar_core.quant.gguf_search import refine_sym_levels, search_scale_min, search_scale_sym, search_super_scale

K_TYPES = ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]


def weight(rows=32, cols=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * torch.rand(rows, 1, generator=g) * 0.1


def rel_err(w, dq, imp=None):
    imp = torch.ones(w.shape[1]) if imp is None else imp
    return float((((dq - w) ** 2) * imp).sum() / ((w ** 2) * imp).sum())


@pytest.mark.parametrize("name", K_TYPES)
@pytest.mark.parametrize("search", [False, True])
def test_record_structure_and_exact_dequantize(name, search):
    s = gguf_scheme(name)
    w = weight()
    qt = quantize(w, s, search=search)
    assert torch.equal(qt.dequantize(), fake_quantize(w, s, search=search))
    groups = 512 // s.group_size
    supers = groups // s.super_group_size
    assert qt.codes.shape == (32, 512) and int(qt.codes.max()) <= 2**s.bits - 1
    assert qt.scale.shape == (32, groups)
    d = qt.extras["d"]
    assert d.shape == (32, supers) and torch.equal(d, d.half().float())  # exact fp16 super scale
    sc = qt.extras["sub_scale"].float().reshape(32, supers, -1)
    assert torch.equal(qt.scale, (d.unsqueeze(-1) * sc).reshape(32, groups))
    if s.data_type == "int_asym_dq":
        assert int(qt.extras["sub_scale"].max()) <= 2**s.super_bits - 1
        mn = (qt.extras["dmin"].unsqueeze(-1) * qt.extras["sub_min"].float().reshape(32, supers, -1))
        assert torch.equal(qt.zero, -mn.reshape(32, groups))
    else:
        half = 2 ** (s.super_bits - 1)
        assert -half <= int(qt.extras["sub_scale"].min()) and int(qt.extras["sub_scale"].max()) <= half - 1
        assert torch.all(qt.zero == 2 ** (s.bits - 1))
    err = rel_err(w, qt.dequantize())
    assert err < {2: 0.2, 3: 0.05, 4: 0.012, 5: 0.004, 6: 0.001}[s.bits]


@pytest.mark.parametrize("name", K_TYPES)
def test_fake_quant_is_differentiable_in_v_and_minmax(name):
    s = gguf_scheme(name)
    w = weight(8, 256)
    groups = 256 // s.group_size
    v = torch.zeros(8, groups, s.group_size, requires_grad=True)
    lo = torch.ones(8, groups, requires_grad=True)
    hi = torch.ones(8, groups, requires_grad=True)
    out = fake_quantize(w, s, v=v, min_scale=lo, max_scale=hi)
    ((out - w) ** 2).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert lo.grad is not None and hi.grad is not None
    assert (lo.grad.abs().sum() + hi.grad.abs().sum()) > 0
    # the tuned record reproduces the forward exactly
    qt = quantize(w, s, v=v.detach(), min_scale=lo.detach(), max_scale=hi.detach())
    assert torch.equal(qt.dequantize(), out.detach())


@pytest.mark.parametrize("name", K_TYPES)
def test_search_beats_plain_minmax(name):
    s = gguf_scheme(name)
    w = weight(64, 512, seed=5)
    plain = rel_err(w, quantize(w, s).dequantize())
    searched = rel_err(w, quantize(w, s, search=True).dequantize())
    assert searched < plain


@pytest.mark.parametrize("name", K_TYPES)
def test_imatrix_search_lowers_weighted_error(name):
    s = gguf_scheme(name)
    w = weight(64, 512, seed=6)
    imp = torch.rand(512, generator=torch.Generator().manual_seed(7)) ** 4 * 100
    without = rel_err(w, quantize(w, s, search=True).dequantize(), imp)
    with_im = rel_err(w, quantize(w, s, search=True, imatrix=imp).dequantize(), imp)
    assert with_im < without


def test_zero_and_constant_rows_are_exact():
    w = torch.zeros(4, 256)
    w[1] = 0.25
    w[2, :16] = -1.0
    for name in K_TYPES:
        for search in (False, True):
            dq = quantize(w, gguf_scheme(name), search=search).dequantize()
            assert torch.allclose(dq[0], w[0]) and torch.isfinite(dq).all(), name


def test_row_not_multiple_of_super_block_is_refused():
    with pytest.raises(SchemeError, match="in_features"):
        quantize(torch.randn(4, 288), gguf_scheme("q4_k"))


def test_search_scale_min_recovers_grid_data():
    scale, mn = 0.3, -1.2
    levels = torch.randint(0, 16, (10, 32), generator=torch.Generator().manual_seed(0)).float()
    levels[:, 0], levels[:, 1] = 0, 15
    x = levels * scale + mn
    got_scale, got_min = search_scale_min(x, torch.ones_like(x), 15, -1.0, 0.1, 20)
    assert torch.allclose(got_scale, torch.full_like(got_scale, scale), atol=1e-5)
    assert torch.allclose(got_min, torch.full_like(got_min, mn), atol=1e-5)


def test_sym_searches_recover_grid_data():
    levels = torch.randint(-4, 4, (10, 16), generator=torch.Generator().manual_seed(1)).float()
    levels[:, 0] = -4
    x = levels * 0.05
    for fn in (search_scale_sym, refine_sym_levels):
        scale = fn(x, x * x, 4)
        assert torch.allclose(scale, torch.full_like(scale, 0.05), atol=1e-6), fn.__name__


def test_super_scale_search_is_non_negative_and_fits():
    vals = torch.rand(6, 8, generator=torch.Generator().manual_seed(2))
    d, ints = search_super_scale(vals, torch.ones_like(vals), 63)
    assert torch.all(d > 0) and ints.min() >= 0 and ints.max() <= 63
    assert float(((d * ints - vals) ** 2).max()) < (float(d.max()) ** 2)


def test_types_are_registered():
    assert get_data_type("int_asym_dq").name == "int_asym_dq"
    assert get_data_type("int_sym_dq").name == "int_sym_dq"
    assert to_groups(torch.zeros(2, 256), 16).shape == (2, 16, 16)
