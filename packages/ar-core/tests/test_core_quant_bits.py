"""Bits-per-weight accounting for every scheme family."""

import pytest

from ar_core.bits import average_bits, bits_per_weight, layer_bits, scale_count
from ar_core.errors import SchemeError
from ar_core.presets import get_preset
from ar_core.scheme import QuantScheme

S = QuantScheme
SHAPE = (4096, 4096)


@pytest.mark.parametrize("name,total", [
    ("W4A16", 4 + 16 / 128), ("W2A16G32", 2 + 16 / 32), ("MXFP4", 4 + 8 / 32), ("MXFP8", 8 + 8 / 32),
    ("MXINT4", 4 + 8 / 32), ("NVFP4", 4 + 8 / 16 + 32 / 4096**2), ("FPW8A16", 8 + 16 / 4096**2),
    ("FP8_STATIC", 8 + 16 / 4096), ("FP8_BLOCK", 8 + 16 / 128**2), ("BF16", 16),
    ("GGUF:Q4_0", 18 * 8 / 32), ("GGUF:Q4_1", 20 * 8 / 32), ("GGUF:Q5_0", 22 * 8 / 32), ("GGUF:Q5_1", 24 * 8 / 32),
    ("GGUF:Q8_0", 34 * 8 / 32), ("GGUF:Q2_K_S", 84 * 8 / 256), ("GGUF:Q3_K_M", 110 * 8 / 256),
    ("GGUF:Q4_K_M", 144 * 8 / 256), ("GGUF:Q5_K_S", 176 * 8 / 256), ("GGUF:Q6_K", 210 * 8 / 256),
])
def test_preset_bits_per_weight(name, total):
    scheme = get_preset(name)
    assert bits_per_weight(scheme, SHAPE) == pytest.approx(total, rel=1e-12)
    assert bits_per_weight(scheme, SHAPE, with_params=False) == scheme.bits


def test_asym_int_counts_zero_bits():
    assert bits_per_weight(S(bits=4, group_size=128, sym=False), SHAPE) == 4 + (16 + 4) / 128
    assert bits_per_weight(S(bits=4, group_size=128, scale_dtype="float32"), SHAPE) == 4 + 32 / 128


def test_float_zp_outside_gguf_counts_scale_and_min():
    s = S(bits=4, group_size=64, sym=False, data_type="int_asym_float_zp")
    assert bits_per_weight(s, SHAPE) == 4 + 32 / 64


def test_dq_types_without_gguf_name_use_block_bytes():
    s = S(bits=4, group_size=32, sym=False, data_type="int_asym_dq", super_bits=6, super_group_size=8)
    assert bits_per_weight(s, SHAPE) == 4.5


def test_tail_groups_are_counted():
    s = S(bits=4, group_size=128)
    lb = layer_bits(s, (10, 300))  # 3 groups per row, the last one padded
    assert (lb.elements, lb.code_bits, lb.param_bits) == (3000, 12000, 10 * 3 * 16)
    assert scale_count(S(bits=8, group_size=(128, 128), data_type="fp"), (300, 129)) == 3 * 2
    assert scale_count(S(bits=4, group_size=256), (5, 100)) == 5  # group larger than the row: per channel


def test_average_is_weighted_by_elements():
    layers = [(get_preset("W4A16"), (128, 256)), (get_preset("BF16"), (128, 768))]
    expect = (128 * 256 * (4 + 16 / 128) + 128 * 768 * 16) / (128 * 1024)
    assert average_bits(layers) == pytest.approx(expect)
    assert average_bits(layers, with_params=False) == pytest.approx((256 * 4 + 768 * 16) / 1024)
    with pytest.raises(SchemeError):
        average_bits([])
