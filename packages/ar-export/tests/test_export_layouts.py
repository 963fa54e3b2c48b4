"""Per-layer layouts decode back to the record's codes (ar_core codecs and compressed-tensors' own unpacker)."""

import pytest
import torch

from ar_core.pack import awq, fp4, gptq, mlx
from ar_core.presets import parse_scheme
from ar_core.quant import quantize
from ar_core.layouts import get_layout
from ar_export.act_scales import static_input_scale


def _record(scheme, shape=(64, 256), seed=0):
    torch.manual_seed(seed)
    return quantize(torch.randn(*shape) * 0.05, parse_scheme(scheme))


def _gptq_dequant(t, bits, k, n, zero_offset):
    q = gptq.unpack_rows(t["qweight"], bits, k).float()
    z = gptq.unpack_cols(t["qzeros"], bits, n).float() + zero_offset
    g = t["g_idx"].long() if "g_idx" in t else None
    scales = t["scales"].float()
    idx = g if g is not None else torch.arange(k) // (k // scales.shape[0])
    return (scales[idx] * (q - z[idx])).t()


@pytest.mark.parametrize("scheme,offset", [("W4A16", 1), ("W2A16", 1), ("W3A16", 1), ("W8A16", 1),
                                           ({"scheme": "W4A16", "sym": False}, 0),
                                           ({"scheme": "W3A16", "sym": False, "group_size": 64}, 0)])
def test_gptq_layout_dequantizes_like_record(scheme, offset):
    qt = _record(scheme)
    t = get_layout("gptq" if offset else "gptq_v2").to_tensors(qt, g_idx=True)
    bits = qt.scheme.bits
    assert t["qweight"].shape == (256 * bits // 32, 64) and t["qweight"].dtype == torch.int32
    assert t["qzeros"].shape == (qt.scale.shape[1], 64 * bits // 32) and t["scales"].dtype == torch.float16
    assert torch.equal(t["g_idx"], torch.arange(256, dtype=torch.int32) // qt.scheme.group_size)
    torch.testing.assert_close(_gptq_dequant(t, bits, 256, 64, offset), qt.dequantize(), rtol=0, atol=1e-6)


def test_gptq_v1_sym4_zeros_are_seven():
    t = get_layout("gptq").to_tensors(_record("W4A16"))
    assert (t["qzeros"] == 0x77777777).all()


def test_awq_layout_raw_zeros():
    qt = _record({"scheme": "W4A16", "sym": False})
    t = get_layout("awq").to_tensors(qt)
    assert t["qweight"].shape == (256, 8) and t["qzeros"].shape == (2, 8)
    q = awq.unpack(t["qweight"]).float()
    z = awq.unpack(t["qzeros"]).float().repeat_interleave(128, 0)
    w = (t["scales"].float().repeat_interleave(128, 0) * (q - z)).t()
    torch.testing.assert_close(w, qt.dequantize(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("scheme", ["W4A16", {"scheme": "W3A16", "group_size": 64}, {"scheme": "W5A16", "sym": False,
                                                                                       "group_size": 32}])
def test_mlx_layout_affine(scheme):
    qt = _record(scheme)
    t = get_layout("mlx").to_tensors(qt)
    gs = qt.scheme.group_size
    q = mlx.unpack(t["weight"], qt.scheme.bits, 256).float()
    w = t["scales"].float().repeat_interleave(gs, 1) * q + t["biases"].float().repeat_interleave(gs, 1)
    assert t["weight"].dtype == torch.uint32 and t["weight"].shape == (64, 256 * qt.scheme.bits // 32)
    # biases are fp16-rounded -scale*zero: exact for sym up to fp16 rounding of the product
    torch.testing.assert_close(w, qt.dequantize(), rtol=0, atol=2e-3 * qt.dequantize().abs().max().item())


@pytest.mark.parametrize("scheme", ["W4A16", "W2A16", "W8A16", {"scheme": "W4A16", "sym": False},
                                    {"scheme": "W4A16", "group_size": -1}])
def test_compressed_tensors_pack_matches_its_unpacker(scheme):
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    qt = _record(scheme)
    t = get_layout("pack_quantized").to_tensors(qt, torch.float16)
    bits, half = qt.scheme.bits, 2 ** (qt.scheme.bits - 1)
    q = unpack_from_int32(t["weight_packed"], bits, torch.Size(qt.shape)).long()
    assert torch.equal(q + half, qt.codes.long())
    if not qt.scheme.sym:
        z = unpack_from_int32(t["weight_zero_point"], bits, torch.Size(qt.zero.shape), packed_dim=0).long()
        assert torch.equal(z + half, qt.zero.long())
    assert torch.equal(t["weight_shape"], torch.tensor([64, 256]))


def test_mx_and_nvfp4_layouts():
    mx = _record("MXFP4")
    t = get_layout("mxfp4").to_tensors(mx)
    assert t["weight_packed"].shape == (64, 128) and t["weight_scale"].shape == (64, 8)
    assert torch.equal(fp4.unpack_nibbles(t["weight_packed"]), mx.codes.to(torch.uint8))
    assert torch.equal(fp4.e8m0_decode(t["weight_scale"]), mx.scale)
    nv = _record("NVFP4")
    t = get_layout("nvfp4").to_tensors(nv, torch.tensor(10.0))
    assert t["weight_scale"].dtype == torch.float8_e4m3fn and t["weight_scale"].shape == (64, 16)
    assert torch.equal(t["weight_scale"].float(), nv.scale)
    assert t["weight_global_scale"].shape == (1,) and t["input_global_scale"].item() == 10.0


def test_static_input_scale_needs_act_max():
    from ar_core.errors import ArError

    qt = _record("FP8_STATIC")
    with pytest.raises(ArError, match="act_max"):
        static_input_scale(qt, 448.0)
    qt.extras["act_max"] = torch.tensor(448.0 * 3)
    assert static_input_scale(qt, 448.0).item() == 3.0


def test_gptq_v1_refuses_zero_point_zero():
    from ar_core.errors import ArError

    qt = _record({"scheme": "W4A16", "sym": False})
    qt.zero[0, 0] = 0
    with pytest.raises(ArError, match="zero"):
        get_layout("gptq").to_tensors(qt)
    assert get_layout("gptq_v2").to_tensors(qt)["qzeros"].shape == (2, 8)
