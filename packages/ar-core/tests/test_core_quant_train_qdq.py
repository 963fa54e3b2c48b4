"""The tuners' lean fake quantization equals `fake_quantize` bit for bit: values and gradients (v, min/max scales)."""

import pytest
import torch

from ar_core.presets import gguf_scheme
from ar_core.quant import fake_quantize, get_data_type
from ar_core.quant.train_qdq import training_qdq
from ar_core.scheme import QuantScheme

S = QuantScheme
SCHEMES = [S(bits=4, group_size=32), S(bits=2, group_size=32), S(bits=8, group_size=32),
           S(bits=4, group_size=32, scale_dtype="float16"), S(bits=4, group_size=-1),
           S(bits=4, group_size=32, sym=False), S(bits=2, group_size=64, sym=False),
           S(bits=4, group_size=32, data_type="mx_fp"), S(bits=8, group_size=32, data_type="mx_fp"),
           S(bits=4, group_size=32, data_type="mx_fp_rceil"), S(bits=4, group_size=32, data_type="mx_int"),
           S(bits=4, group_size=16, data_type="nv_fp"), S(bits=8, group_size=-1, data_type="fp"),
           S(bits=8, group_size=0, data_type="fp"), S(bits=8, group_size=(4, 32), data_type="fp"),
           S(bits=4, group_size=32, sym=False, data_type="int_asym_float_zp")]
SCHEMES += [gguf_scheme(k) for k in ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")]


def _both(w, scheme, start, seed, minmax=True):
    g = torch.Generator().manual_seed(seed + 100)
    wg = get_data_type(scheme.data_type).group(w, scheme)
    v0 = (torch.rand(wg.shape, generator=g) - 0.5) * 0.8
    a0 = 0.6 + torch.rand(wg.shape[:2], generator=g) * 0.6  # crosses the [0, 1] clamp
    b0 = 0.6 + torch.rand(wg.shape[:2], generator=g) * 0.6
    up = torch.randn(w.shape, generator=g)
    results = []
    for qdq in (lambda **kw: fake_quantize(w, scheme, **kw, **start), training_qdq(w, scheme, **start)):
        v, a, b = (t.clone().requires_grad_(True) for t in (v0, a0, b0))
        fake = qdq(v=v, min_scale=a if minmax else None, max_scale=b if minmax else None)
        (fake * up).sum().backward()
        results.append([fake.detach(), v.grad, a.grad, b.grad])
    return results


def _same(x, y):
    return (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))


@pytest.mark.parametrize("searched", [False, True])
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"{s.data_type}{s.bits}g{s.group_size}{'s' if s.sym else 'a'}"
                         f"{s.scale_dtype[:4]}{s.super_bits or ''}")
def test_lean_qdq_equals_fake_quantize_bit_for_bit(scheme, searched):
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(8, 256, generator=g) * torch.rand(8, 1, generator=g) * 0.1
        dt = get_data_type(scheme.data_type)
        imatrix = torch.rand(256, generator=g) if seed == 2 else None
        start = dt.tuning_start(dt.group(w, scheme), scheme, imatrix) if searched else {}
        ours, ref = _both(w, scheme, start, seed, minmax=seed != 1)
        for name, x, y in zip(("value", "grad v", "grad min_scale", "grad max_scale"), ours, ref):
            assert _same(x, y), f"{name} differs (seed {seed})"


def test_lean_qdq_of_an_unquantized_scheme_is_the_weight():
    w = torch.randn(4, 32)
    assert torch.equal(training_qdq(w, S(bits=16))(), w)
