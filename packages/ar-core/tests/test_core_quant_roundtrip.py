"""Every data type: dequantize(quantize(w)) equals fake_quantize(w) bit for bit, and errors stay within the grid."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_core.quant import dequantize, fake_quantize, get_data_type, quantize
from ar_core.quant.fp_grids import E2M1, E4M3, MX_FP_FORMATS, MX_INT_FORMATS, floor_log2
from ar_core.scheme import QuantScheme

S = QuantScheme
SCHEMES = [
    S(bits=4, group_size=32), S(bits=2, group_size=16), S(bits=3, group_size=-1), S(bits=8, group_size=0),
    S(bits=4, group_size=32, sym=False), S(bits=5, group_size=-1, sym=False),
    S(bits=4, group_size=32, sym=False, data_type="int_asym_float_zp"),
    S(bits=5, group_size=32, sym=False, data_type="int_asym_float_zp", scale_dtype="float32"),
    S(bits=4, group_size=32, data_type="mx_fp"), S(bits=6, group_size=32, data_type="mx_fp"),
    S(bits=8, group_size=32, data_type="mx_fp"), S(bits=4, group_size=32, data_type="mx_fp_rceil"),
    S(bits=8, group_size=32, data_type="mx_fp_rceil"), S(bits=2, group_size=32, data_type="mx_int"),
    S(bits=4, group_size=32, data_type="mx_int"), S(bits=8, group_size=32, data_type="mx_int"),
    S(bits=4, group_size=16, data_type="nv_fp"),
    S(bits=8, group_size=0, data_type="fp"), S(bits=8, group_size=-1, data_type="fp", scale_dtype="float32"),
    S(bits=8, group_size=32, data_type="fp"), S(bits=8, group_size=(8, 16), data_type="fp"),
]
IDS = [f"{s.data_type}-{s.bits}-{s.group_size}-{'sym' if s.sym else 'asym'}" for s in SCHEMES]


def _weight(seed, out, cols, magnitude=1.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, cols, generator=g) * 0.05
    w[0, 0] = 0.3  # an outlier
    return w * magnitude


def _group_params(scheme, w):
    dt = get_data_type(scheme.data_type)
    wg = dt.group(w, scheme)
    v = (torch.rand(wg.shape, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.6
    mm = torch.rand(wg.shape[:2], generator=torch.Generator().manual_seed(2)) * 0.4 + 0.6
    return v, mm


@pytest.mark.parametrize("scheme", SCHEMES, ids=IDS)
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1000), out=st.integers(1, 19), cols=st.integers(1, 83), search=st.booleans(),
       tuned=st.booleans(), magnitude=st.sampled_from([1.0, 1e-7, 1e6]))
def test_fake_equals_dequantize(scheme, seed, out, cols, search, tuned, magnitude):
    w = _weight(seed, out, cols, magnitude)
    kw = {"search": search}
    if tuned:
        v, mm = _group_params(scheme, w)
        kw.update(v=v, max_scale=mm, min_scale=mm)
    if search:
        kw["imatrix"] = torch.rand(cols, generator=torch.Generator().manual_seed(seed)) + 0.01
    fake = fake_quantize(w, scheme, **kw)
    qt = quantize(w, scheme, **kw)
    assert fake.shape == w.shape and qt.codes.shape == w.shape
    assert torch.equal(fake, dequantize(qt))
    assert torch.equal(fake, qt.dequantize())
    assert torch.isfinite(fake).all()


@pytest.mark.parametrize("scheme", SCHEMES, ids=IDS)
def test_code_and_parameter_layout(scheme):
    out, cols = 20, 70
    qt = quantize(_weight(0, out, cols), scheme)
    dt = scheme.data_type
    gs = scheme.group_size
    if isinstance(gs, tuple):
        expect = (-(-out // gs[0]), -(-cols // gs[1]))
    elif gs == 0:
        expect = (1, 1)
    elif gs == -1:
        expect = (out, 1)
    else:
        expect = (out, -(-cols // gs))
    assert tuple(qt.scale.shape) == expect and qt.scale.dtype == torch.float32
    if dt == "fp":
        assert qt.codes.dtype == torch.float8_e4m3fn and qt.zero is None
        return
    assert qt.codes.dtype == torch.uint8
    assert int(qt.codes.max()) < 2**scheme.bits
    if dt == "int":
        assert qt.zero.dtype == torch.int32 and tuple(qt.zero.shape) == expect
    elif dt == "int_asym_float_zp":
        assert qt.zero.dtype == torch.float32 and (qt.zero <= 0).all()
    else:
        assert qt.zero is None
    if dt.startswith("mx_"):
        e = torch.log2(qt.scale)
        assert torch.equal(e, e.round()) and e.abs().max() <= 127
    if dt == "nv_fp":
        assert torch.equal(qt.scale, qt.scale.to(torch.float8_e4m3fn).float())
        assert qt.extras["global_scale"].dtype == torch.float32


def _per_element(qt, t):
    """Broadcast a per-group tensor [rows, G] to the weight's shape."""
    dt = get_data_type(qt.scheme.data_type)
    grouped = dt.group(torch.zeros(qt.shape), qt.scheme)
    return dt.ungroup(t.unsqueeze(-1).expand(grouped.shape), qt.shape, qt.scheme)


def _float_grid_bound(x, fmt):
    """Half a grid step at |x| (plus whatever lies beyond max_norm) in units of the element scale."""
    a = x.abs().clamp(max=fmt.max_norm)
    if fmt.ebits == 0:
        step = 2.0**-fmt.mbits
    else:
        step = torch.exp2(floor_log2(a).clamp(min=fmt.min_exp) - fmt.mbits)
    return step / 2 + (x.abs() - fmt.max_norm).clamp(min=0)


@pytest.mark.parametrize("scheme", SCHEMES, ids=IDS)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 1000), out=st.integers(1, 12), cols=st.integers(1, 70))
def test_error_within_half_a_grid_step(scheme, seed, out, cols):
    w = _weight(seed, out, cols)
    qt = quantize(w, scheme)
    err = (qt.dequantize() - w).abs()
    dt = scheme.data_type
    scale = _per_element(qt, qt.scale).abs()
    tol = 1e-6 * w.abs().max()
    if dt == "int" and scheme.sym:
        x = w / _per_element(qt, qt.scale)
        inside = (x >= -(2 ** (scheme.bits - 1))) & (x <= 2 ** (scheme.bits - 1) - 1)
        assert (err[inside] <= scale[inside] / 2 + tol).all()
        assert (err <= scale + tol).all()  # the positive end may lose one level
    elif dt == "int":
        assert (err <= scale + tol).all()  # the rounded zero point can shift the range by half a step
    elif dt == "int_asym_float_zp":
        assert (err <= scale * 0.501 + tol).all()
    else:
        if dt == "nv_fp":
            scale = scale / qt.extras["global_scale"]
            fmt = E2M1
        elif dt == "fp":
            fmt = E4M3
        else:
            fmt = (MX_INT_FORMATS if dt == "mx_int" else MX_FP_FORMATS)[scheme.bits]
        x = torch.where(scale > 0, w / scale.clamp(min=1e-30), torch.zeros_like(w))
        assert (err <= _float_grid_bound(x, fmt) * scale + tol).all()
    if dt in ("fp", "mx_fp_rceil"):  # amax maps inside the grid: no clipping at all
        top = E4M3.max_norm if dt == "fp" else MX_FP_FORMATS[scheme.bits].max_norm
        # fp16 scale rounding: 2^-10 relative for normal scales, coarser (2^-24 absolute) for subnormal ones
        slack = 1e-6 if scheme.scale_dtype == "float32" or dt != "fp" else \
            torch.clamp(2.0**-24 / scale.clamp(min=1e-30), min=2.0**-10)
        assert (w.abs() / scale.clamp(min=1e-30) <= top * (1 + slack)).all()


@pytest.mark.parametrize("scheme", SCHEMES, ids=IDS)
def test_all_zero_weight(scheme):
    w = torch.zeros(3, 40)
    assert torch.equal(fake_quantize(w, scheme), w)
    assert torch.equal(quantize(w, scheme).dequantize(), w)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("scheme", SCHEMES, ids=IDS)
def test_fake_equals_dequantize_on_cuda(scheme):
    w = _weight(0, 33, 100).cuda()
    imatrix = torch.rand(100, device="cuda") + 0.01
    for search in (False, True):
        fake = fake_quantize(w, scheme, search=search, imatrix=imatrix)
        qt = quantize(w, scheme, search=search, imatrix=imatrix)
        assert torch.equal(fake, qt.dequantize())
        assert torch.equal(fake.cpu(), fake_quantize(w.cpu(), scheme, search=search, imatrix=imatrix.cpu()))
