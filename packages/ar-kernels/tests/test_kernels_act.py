"""Activation quantization in `ar_kernels.load`: specs read from the quantization config, the QDQ rules, the static
scales read from the checkpoint, and weight-only checkpoints left exactly as they were."""

import pytest
import torch

from ar_core.errors import CheckpointError
from ar_core.quant import fake_quantize
from ar_core.scheme import QuantScheme
from ar_kernels import load
from ar_kernels.qlinear.act import ActSpec, from_auto_round, from_compressed_tensors, quantize_input
from ar_kernels.testing import quantize_block_linears, random_fp8_qt, random_nvfp4_qt, save_quantized, tiny_llama

CT_NVFP4 = {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16,
            "dynamic": "local", "scale_dtype": "torch.float8_e4m3fn"}
CT_W8A8 = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True}
CT_FP8_STATIC = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False}
CT_MXFP4 = {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "group", "group_size": 32,
            "dynamic": True, "scale_dtype": "torch.uint8"}


@pytest.mark.parametrize("args, spec", [
    (CT_W8A8, ActSpec("int", 8, -1, True, True)),
    (CT_FP8_STATIC, ActSpec("fp", 8, 0, False, True)),
    (CT_NVFP4, ActSpec("nv_fp", 4, 16, False, True)),
    (CT_MXFP4, ActSpec("mx_fp", 4, 32, True, True)),
    (None, None),
])
def test_compressed_tensors_input_activations_become_specs(args, spec):
    assert from_compressed_tensors(args, "l") == spec


@pytest.mark.parametrize("fields, spec", [
    (dict(act_bits=4, act_data_type="nv_fp4_with_static_gs", act_group_size=16, act_dynamic=True),
     ActSpec("nv_fp", 4, 16, False)),
    (dict(act_bits=8, act_data_type="fp", act_group_size=0, act_dynamic=False), ActSpec("fp", 8, 0, False)),
    (dict(act_bits=4, act_data_type="mx_fp4", act_group_size=32), ActSpec("mx_fp", 4, 32, True)),
    (dict(act_bits=16), None), ({}, None),
])
def test_auto_round_act_fields_become_specs(fields, spec):
    assert from_auto_round(fields, "l") == spec


@pytest.mark.parametrize("bad, match", [({**CT_FP8_STATIC, "symmetric": False}, "asymmetric"),
                                        ({**CT_W8A8, "strategy": "attn_head"}, "strategy")])
def test_unsupported_activation_args_raise_naming_the_layer(bad, match):
    with pytest.raises(CheckpointError, match=f"'layer.x'.*{match}|{match}.*'layer.x'"):
        from_compressed_tensors(bad, "layer.x")


def test_qdq_rules():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 64) * 2
    # int8 per token: compressed-tensors' scale amax / 127.5, codes in [-128, 127]
    scale = x.abs().amax(-1, keepdim=True) / 127.5
    want = (x / scale).round().clamp(-128, 127) * scale
    torch.testing.assert_close(quantize_input(x, ActSpec("int", 8, -1, True)), want, rtol=0, atol=1e-6)
    # FP8 static: the stored scale, clamped at 448 * scale
    s = torch.tensor([0.004])
    got = quantize_input(x, ActSpec("fp", 8, 0, False), s)
    torch.testing.assert_close(got, (x / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s)
    assert got.abs().max() <= 448 * 0.004 + 1e-6
    # NVFP4 with a stored global scale and MX: ar_core's weight rules applied to the [tokens, K] activations
    gs = torch.tensor([448.0 * 6 / 5.0])
    flat = x.reshape(-1, 64)
    nv = fake_quantize(flat, QuantScheme(bits=4, group_size=16, data_type="nv_fp"), global_scale=gs)
    torch.testing.assert_close(quantize_input(x, ActSpec("nv_fp", 4, 16, False), gs), nv.reshape(x.shape))
    torch.testing.assert_close(quantize_input(x, ActSpec("nv_fp", 4, 16, False, True), gs), nv.reshape(x.shape))
    mx = fake_quantize(flat, QuantScheme(bits=4, group_size=32, data_type="mx_fp"))
    torch.testing.assert_close(quantize_input(x, ActSpec("mx_fp", 4, 32, True)), mx.reshape(x.shape))
    assert quantize_input(x.bfloat16(), ActSpec("int", 8, -1, True)).dtype == torch.bfloat16
    # asymmetric int8 per token (compressed-tensors): scale (max - min) / 255, zero round(-128 - min / scale)
    lo, hi = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / 255
    zero = (-128 - lo / scale).clamp(-128, 127).round()
    want = ((x / scale + zero).round().clamp(-128, 127) - zero) * scale
    asym = ActSpec("int", 8, -1, True, True, sym=False)
    assert from_compressed_tensors({**CT_W8A8, "symmetric": False}, "l") == asym
    torch.testing.assert_close(quantize_input(x, asym), want, rtol=0, atol=1e-5)


def _fp8_static_checkpoint(tmp_path, with_scale=True):
    model = tiny_llama(64, 128)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    layers = {n: (random_fp8_qt(*model.get_submodule(n).weight.shape, -1, seed=i), "fp8") for i, n in enumerate(names)}

    def add_input_scale(state):
        if with_scale:
            state.update({f"{n}.input_scale": torch.tensor([0.0625]) for n in names})
        return state

    save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "auto-round", "bits": 8, "group_size": -1, "sym": True, "data_type": "fp",
        "act_bits": 8, "act_data_type": "fp", "act_group_size": 0, "act_dynamic": False,
        "packing_format": "auto_round:fp8_static"}}, add_input_scale)
    return names


def test_static_fp8_checkpoint_quantizes_inputs_with_its_stored_scale(tmp_path):
    names = _fp8_static_checkpoint(tmp_path)
    model = load(tmp_path, dtype=torch.float32)
    layer = model.get_submodule(names[0])
    assert layer.input_quant.spec == ActSpec("fp", 8, 0, False) and float(layer.input_quant.scale) == 0.0625
    x = torch.randn(2, 3, layer.in_features) * 3
    with torch.no_grad():
        want = torch.nn.functional.linear(quantize_input(x, layer.input_quant.spec, torch.tensor([0.0625])),
                                          layer.dequantize_weight())
        torch.testing.assert_close(layer(x), want)


def test_static_checkpoint_without_its_input_scale_is_refused(tmp_path):
    _fp8_static_checkpoint(tmp_path, with_scale=False)
    with pytest.raises(CheckpointError, match="input_scale"):
        load(tmp_path)


def test_nvfp4_compressed_tensors_reads_input_global_scale(tmp_path):
    model = tiny_llama(64, 128)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    layers = {n: (random_nvfp4_qt(*model.get_submodule(n).weight.shape, seed=i), "nvfp4") for i, n in enumerate(names)}
    weights = {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16}
    save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "ignore": ["lm_head"],
        "config_groups": {"g": {"targets": ["Linear"], "weights": weights, "input_activations": CT_NVFP4}}}},
        lambda st: {**st, **{f"{n}.input_global_scale": torch.tensor([600.0]) for n in names}})
    loaded = load(tmp_path)
    q = loaded.get_submodule(names[-1]).input_quant
    assert q.spec == ActSpec("nv_fp", 4, 16, False, True) and float(q.scale) == 600.0


def test_weight_only_checkpoints_multiply_the_inputs_unchanged(tmp_path):
    model = tiny_llama(64, 128)
    ref = save_quantized(tmp_path, model, quantize_block_linears(model), {"quantization_config": {
        "quant_method": "auto-round", "packing_format": "auto_round:auto_gptq", "bits": 4, "group_size": 32,
        "sym": True, "data_type": "int", "block_name_to_quantize": "model.layers"}})
    loaded = load(tmp_path, dtype=torch.float32)
    assert loaded.ar_backends and all(loaded.get_submodule(n).input_quant is None for n in loaded.ar_backends)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, ref(ids).logits, rtol=1e-4, atol=1e-4)


def _bf16_inputs():
    """bf16 activations at several magnitudes: few mantissa bits put many of them exactly on E2M1/FP8 ties."""
    torch.manual_seed(1)
    return [(torch.randn(40, 256) * s).bfloat16() for s in (0.1, 1.0, 3.0, 20.0)]


@pytest.mark.slow
@pytest.mark.consumers
@pytest.mark.parametrize("bits", [4, 8])
def test_mx_activations_follow_compressed_tensors(bits):
    """compressed-tensors rounds each group max up to the next power of two near it before taking the exponent,
    so its MX activation scale is 2x auto-round's for some groups; the native spec reproduces it bit for bit."""
    ct = pytest.importorskip("compressed_tensors.quantization")
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize as ct_fake_quantize
    from compressed_tensors.quantization.utils.helpers import compute_dynamic_scales_and_zp

    args = ct.QuantizationArgs(**{**CT_MXFP4, "num_bits": bits, "scale_dtype": torch.uint8})
    spec = from_compressed_tensors({**CT_MXFP4, "num_bits": bits}, "l")
    for x in _bf16_inputs() + [x.float() for x in _bf16_inputs()]:
        scale, zero = compute_dynamic_scales_and_zp(x, args, None)
        theirs = ct_fake_quantize(x, scale, zero, args)
        assert torch.equal(quantize_input(x, spec), theirs)


@pytest.mark.slow
@pytest.mark.consumers
def test_auto_round_nvfp4_and_mxint4_activations_follow_auto_round():
    """auto-round's NVFP4 activation QDQ multiplies by reciprocals (its ties fall where ours must), and its MX
    activation quantizer treats mx_int as mx_fp: both reproduced bit for bit."""
    from types import SimpleNamespace

    pytest.importorskip("auto_round")
    from auto_round.experimental.qmodules.mx import _mx_qdq
    from auto_round.experimental.qmodules.nvfp4 import _nvfp4_qdq

    nv = from_auto_round(dict(act_bits=4, act_data_type="nv_fp4_with_static_gs", act_group_size=16), "l")
    mxint = from_auto_round(dict(act_bits=4, act_data_type="mx_int", act_group_size=32), "l")
    assert mxint == ActSpec("mx_fp", 4, 32, True)
    for x in _bf16_inputs():
        gs = torch.tensor([448.0])
        theirs = _nvfp4_qdq(x.float(), SimpleNamespace(act_bits=4, act_group_size=16), gs).to(x.dtype)
        assert torch.equal(quantize_input(x, nv, gs), theirs)
        config = SimpleNamespace(act_data_type="mx_int", act_bits=4, act_group_size=32)
        assert torch.equal(quantize_input(x, mxint), _mx_qdq(x, config))
