"""Hand-computed small cases for every data type: scales, zeros, codes and dequantized values."""

import pytest
import torch

from ar_core.quant import fake_quantize, quantize
from ar_core.scheme import QuantScheme

S = QuantScheme


def _row32(*head):
    """A 32-wide row starting with `head`, padded with zeros."""
    return torch.tensor([list(head) + [0.0] * (32 - len(head))])


def test_int_sym_full_range_scale_sign():
    w = torch.tensor([[-1.0, 0.5, 0.25, 0.0], [1.0, -0.5, 0.3, 0.0]])
    qt = quantize(w, S(bits=4, group_size=-1))
    assert qt.scale.tolist() == [[0.125], [-0.125]]  # the largest magnitude always maps to -8
    assert qt.zero.tolist() == [[8], [8]]
    assert qt.codes.tolist() == [[0, 12, 10, 8], [0, 12, 6, 8]]
    assert qt.dequantize().tolist() == [[-1.0, 0.5, 0.25, 0.0], [1.0, -0.5, 0.25, 0.0]]


def test_int_sym_two_bit_levels():
    qt = quantize(torch.tensor([[-2.0, -1.0, 0.4, 1.0]]), S(bits=2, group_size=-1))
    assert qt.scale.tolist() == [[1.0]] and qt.zero.tolist() == [[2]]
    assert qt.codes.tolist() == [[0, 1, 2, 3]]


def test_int_asym_scale_and_integer_zero():
    w = torch.tensor([[0.0, 1.5, 3.0, -0.75]])
    qt = quantize(w, S(bits=4, group_size=-1, sym=False))
    assert qt.scale.tolist() == [[0.25]] and qt.zero.tolist() == [[3]]
    assert qt.codes.tolist() == [[3, 9, 15, 0]]
    assert torch.equal(qt.dequantize(), w)


def test_int_asym_all_positive_group_keeps_zero_in_range():
    qt = quantize(torch.tensor([[1.0, 2.0, 3.75]]), S(bits=4, group_size=-1, sym=False))
    assert qt.scale.tolist() == [[0.25]] and qt.zero.tolist() == [[0]]
    assert qt.codes.tolist() == [[4, 8, 15]]


def test_int_min_max_scale_shrink_the_range():
    w = torch.tensor([[-1.0, 3.0]])
    qt = quantize(w, S(bits=4, group_size=-1, sym=False), min_scale=torch.tensor([[0.5]]),
                  max_scale=torch.tensor([[0.5]]))
    assert qt.scale.item() == torch.tensor(2 / 15).half().item()  # (3 * .5 + 1 * .5) / 15, fp16
    assert qt.zero.tolist() == [[4]]  # round(3.75)
    assert qt.codes.tolist() == [[0, 15]]  # both ends clipped


def test_int_asym_float_zp_keeps_float_min():
    w = torch.tensor([[-1.0, 2.75, 0.5, 0.0], [-0.3, 0.45, 0.0, 0.15]])
    qt = quantize(w, S(bits=4, group_size=-1, sym=False, data_type="int_asym_float_zp", scale_dtype="float32"))
    assert qt.zero.dtype == torch.float32
    assert qt.scale[0].tolist() == [0.25] and qt.zero[0].tolist() == [-1.0]
    assert qt.codes[0].tolist() == [0, 15, 6, 4]
    assert torch.allclose(qt.zero[1], torch.tensor([-0.3]))  # not rounded to a multiple of the scale
    assert torch.allclose(qt.scale[1], torch.tensor([0.05]))
    assert qt.codes[1].tolist() == [0, 15, 6, 9]
    assert torch.equal(qt.dequantize(), qt.scale * qt.codes.float() + qt.zero)


def test_mx_fp4_floor_rule_and_ties():
    w = _row32(5.0, 0.25, 0.75, 2.5, 3.5, -1.25, 0.0, 4.0)
    qt = quantize(w, S(bits=4, group_size=32, data_type="mx_fp"))
    assert qt.scale.tolist() == [[1.0]]  # floor(log2 5) - 2 = 0
    assert qt.dequantize()[0, :8].tolist() == [4.0, 0.0, 1.0, 2.0, 4.0, -1.0, 0.0, 4.0]
    assert qt.codes[0, :8].tolist() == [6, 0, 2, 4, 6, 10, 0, 6]


def test_mx_fp4_clips_above_six_and_rceil_does_not():
    w = _row32(7.0, 1.0)
    floor_qt = quantize(w, S(bits=4, group_size=32, data_type="mx_fp"))
    assert floor_qt.scale.tolist() == [[1.0]] and floor_qt.dequantize()[0, :2].tolist() == [6.0, 1.0]
    rceil_qt = quantize(w, S(bits=4, group_size=32, data_type="mx_fp_rceil"))
    assert rceil_qt.scale.tolist() == [[2.0]]  # ceil(log2(7 / 6)) = 1
    assert rceil_qt.dequantize()[0, :2].tolist() == [8.0, 1.0]


def test_mx_fp4_small_group_and_zero_group():
    w = torch.cat([_row32(0.3, -0.1), torch.zeros(1, 32)], dim=1)
    qt = quantize(w, S(bits=4, group_size=32, data_type="mx_fp"))
    assert qt.scale[0, 0].item() == 2.0**-4  # floor(log2 .3) = -2, minus emax 2
    assert qt.scale[0, 1].item() == 2.0**-1  # all-zero group: log2 taken as 1
    assert qt.dequantize()[0, :2].tolist() == [0.25, -0.09375]


def test_mx_fp4_shared_exponent_is_clamped_to_e8m0():
    w = _row32(1e-40)  # floor(log2) - 2 = -135
    qt = quantize(w, S(bits=4, group_size=32, data_type="mx_fp"))
    assert qt.scale.item() == 2.0**-127


def test_mx_fp8_e4m3_elements():
    w = _row32(448.0, 1.0, 17.0, -3 * 2.0**-9)
    qt = quantize(w, S(bits=8, group_size=32, data_type="mx_fp"))
    assert qt.scale.item() == 1.0  # floor(log2 448) - 8 = 0
    assert qt.dequantize()[0, :4].tolist() == [448.0, 1.0, 16.0, -3 * 2.0**-9]
    assert qt.codes[0, 0].item() == 0x7E and qt.codes[0, 3].item() == 0x80 | 3  # subnormal 3 * 2^-9


def test_mx_int4_sign_magnitude():
    w = _row32(1.0, -0.3, 0.875, -1.0)
    qt = quantize(w, S(bits=4, group_size=32, data_type="mx_int"))
    assert qt.scale.item() == 1.0
    assert qt.dequantize()[0, :4].tolist() == [1.0, -0.25, 1.0, -1.0]
    assert qt.codes[0, :4].tolist() == [4, 9, 4, 12]


def test_mx_int4_clamps_to_seven_quarters():
    qt = quantize(_row32(1.9, -1.9), S(bits=4, group_size=32, data_type="mx_int"))
    assert qt.dequantize()[0, :2].tolist() == [1.75, -1.75] and qt.codes[0, :2].tolist() == [7, 15]


def test_nvfp4_global_and_block_scales():
    w = torch.zeros(2, 16)
    w[0, :4] = torch.tensor([6.0, -3.0, 0.75, 0.2])
    w[1, :3] = torch.tensor([3.0, 1.2, -0.5])
    qt = quantize(w, S(bits=4, group_size=16, data_type="nv_fp"))
    assert qt.extras["global_scale"].item() == 448.0  # 448 * 6 / amax 6
    assert qt.scale.tolist() == [[448.0], [224.0]]  # e4m3(448 * amax / 6)
    assert qt.dequantize()[0, :4].tolist() == [6.0, -3.0, 1.0, 0.0]
    assert qt.dequantize()[1, :3].tolist() == [3.0, 1.0, -0.5]
    assert qt.codes[0, :4].tolist() == [7, 13, 2, 0]


def test_nvfp4_given_global_scale():
    w = torch.zeros(1, 16)
    w[0, 0] = 3.0
    qt = quantize(w, S(bits=4, group_size=16, data_type="nv_fp"), global_scale=torch.tensor(224.0))
    assert qt.extras["global_scale"].item() == 224.0 and qt.scale.item() == 112.0
    assert torch.equal(fake_quantize(w, S(bits=4, group_size=16, data_type="nv_fp"), global_scale=224.0),
                       qt.dequantize())


def test_fp8_per_tensor_unit_scale_equals_torch_cast():
    w = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 100
    w[0, 0] = 448.0
    w = w.clamp(-448, 448)
    qt = quantize(w, S(bits=8, group_size=0, data_type="fp", scale_dtype="float32"))
    assert qt.scale.tolist() == [[1.0]]
    assert torch.equal(qt.codes.float(), w.to(torch.float8_e4m3fn).float())


def test_fp8_min_scale():
    qt = quantize(torch.zeros(2, 3), S(bits=8, group_size=-1, data_type="fp", scale_dtype="float32"))
    assert torch.allclose(qt.scale, torch.full((2, 1), 1 / (448 * 512)))


@pytest.mark.parametrize("block", [(2, 3), (4, 4)])
def test_fp8_two_d_blocks(block):
    w = torch.arange(1, 36, dtype=torch.float32).reshape(5, 7)
    qt = quantize(w, S(bits=8, group_size=block, data_type="fp", scale_dtype="float32"))
    m, n = block
    expect = torch.zeros(-(-5 // m), -(-7 // n))
    for i in range(expect.shape[0]):
        for j in range(expect.shape[1]):
            expect[i, j] = w[i * m:(i + 1) * m, j * n:(j + 1) * n].abs().max() / 448
    assert torch.equal(qt.scale, expect)
    assert torch.allclose(qt.dequantize(), w, rtol=2**-4)
