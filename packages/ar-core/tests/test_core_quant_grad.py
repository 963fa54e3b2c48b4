"""Gradients of fake quantization reach the rounding offset v and the min/max range multipliers."""

import pytest
import torch

from ar_core.quant import fake_quantize, get_data_type
from ar_core.scheme import QuantScheme

S = QuantScheme
SCHEMES = [S(bits=4, group_size=32), S(bits=4, group_size=32, sym=False),
           S(bits=4, group_size=32, sym=False, data_type="int_asym_float_zp"),
           S(bits=4, group_size=32, data_type="mx_fp"), S(bits=8, group_size=32, data_type="mx_fp"),
           S(bits=4, group_size=32, data_type="mx_fp_rceil"), S(bits=4, group_size=32, data_type="mx_int"),
           S(bits=4, group_size=16, data_type="nv_fp"), S(bits=8, group_size=-1, data_type="fp"),
           S(bits=8, group_size=(4, 32), data_type="fp")]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"{s.data_type}{s.bits}g{s.group_size}")
def test_gradients_reach_v_and_range_multipliers(scheme):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 96, generator=g) * 0.1
    target = torch.randn(8, 96, generator=g) * 0.1
    wg = get_data_type(scheme.data_type).group(w, scheme)
    v = torch.zeros(wg.shape, requires_grad=True)
    max_scale = torch.full(wg.shape[:2], 0.7, requires_grad=True)
    min_scale = torch.full(wg.shape[:2], 0.8, requires_grad=True)
    fake = fake_quantize(w, scheme, v=v, min_scale=min_scale, max_scale=max_scale)
    (fake - target).pow(2).sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    assert torch.isfinite(max_scale.grad).all() and max_scale.grad.abs().sum() > 0
    if not scheme.sym:
        assert torch.isfinite(min_scale.grad).all() and min_scale.grad.abs().sum() > 0


def test_v_moves_the_rounding():
    scheme = S(bits=4, group_size=32, data_type="mx_fp")
    w = torch.zeros(1, 32)
    w[0, 0], w[0, 1] = 4.0, 1.2  # scale 1: 1.2 rounds to 1.0
    v = torch.zeros(1, 1, 32)
    v[0, 0, 1] = 0.4  # 1.6 rounds to 1.5
    assert fake_quantize(w, scheme, v=v)[0, 1].item() == 1.5
