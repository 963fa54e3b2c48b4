"""`ar_kernels.load` on tiny Llama checkpoints written in every supported layout (per autoround.md §5)."""

import pytest
import torch

from ar_core.errors import CheckpointError
from ar_core.pack.bitstream import pack_last, to_int32
from ar_kernels import load
from ar_kernels.qlinear import TORCH_MODULES
from ar_kernels.testing import (quantize_block_linears, random_fp8_qt, random_mx_qt, random_nvfp4_qt,
                                save_quantized, tiny_llama)

HIDDEN, INTER = 64, 128


def tiny_model(seed=0):
    return tiny_llama(HIDDEN, INTER, seed=seed)


def block_linears(model):
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]


def assert_same_logits(tmp_path, ref, **kw):
    model = load(tmp_path, dtype=torch.float32, **kw)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, want = model(ids).logits, ref(ids).logits
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), float((got - want).abs().max())
    return model


def test_auto_round_auto_gptq_and_generate(tmp_path):
    model = tiny_model()
    ref = save_quantized(tmp_path, model, quantize_block_linears(model), {"quantization_config": {
        "quant_method": "auto-round", "packing_format": "auto_round:auto_gptq", "bits": 4, "group_size": 32,
        "sym": True, "data_type": "int", "block_name_to_quantize": "model.layers"}})
    loaded = assert_same_logits(tmp_path, ref)
    assert set(loaded.ar_backends) == set(block_linears(model))
    assert all(b == "cpu" for b, _ in loaded.ar_backends.values())
    out = loaded.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


def test_auto_round_raw_zeros_with_extra_config(tmp_path):
    model = tiny_model()
    layers = quantize_block_linears(model, sym=False, packing="gptq_v2", skip=("k_proj",),
                                    bits_by_suffix={"down_proj": 8})
    extra = {f"model.layers.{i}.mlp.down_proj": {"bits": 8} for i in range(2)}
    extra[".*k_proj.*"] = {"bits": 16}
    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "auto-round", "packing_format": "auto_round", "bits": 4, "group_size": 32, "sym": False,
        "data_type": "int", "extra_config": extra}})
    loaded = assert_same_logits(tmp_path, ref)
    assert isinstance(loaded.model.layers[0].self_attn.k_proj, torch.nn.Linear)
    assert loaded.model.layers[1].mlp.down_proj.scheme.bits == 8


def test_auto_round_awq(tmp_path):
    model = tiny_model()
    layers = quantize_block_linears(model, sym=False, packing="awq")
    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "auto-round", "packing_format": "auto_round:auto_awq", "bits": 4, "group_size": 32,
        "sym": False}})
    assert_same_logits(tmp_path, ref)


def test_gptq_with_dynamic_and_g_idx(tmp_path):
    model = tiny_model()
    layers = quantize_block_linears(model, skip=("v_proj",), bits_by_suffix={"down_proj": 8})

    def add_g_idx(state):
        for name in layers:
            state[f"{name}.g_idx"] = (torch.arange(model.get_submodule(name).in_features) // 32).to(torch.int32)
        return state

    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True, "desc_act": False,
        "dynamic": {"-:.*v_proj": {}, "+:.*down_proj": {"bits": 8}}}}, add_g_idx)
    loaded = assert_same_logits(tmp_path, ref, backend="torch")
    assert loaded.model.layers[0].mlp.up_proj.g_idx is not None
    assert_same_logits(tmp_path, ref)  # the cpu backend drops a plain g_idx


def test_awq_with_modules_to_not_convert(tmp_path):
    model = tiny_model()
    layers = quantize_block_linears(model, sym=False, packing="awq", skip=("o_proj",))
    ref = save_quantized(tmp_path, model, layers, {
        "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True,
                                "version": "gemm", "modules_to_not_convert": ["o_proj"]}})
    assert_same_logits(tmp_path, ref)


def test_compressed_tensors_pack_quantized(tmp_path):
    helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    model = tiny_model()
    layers = quantize_block_linears(model, sym=False, packing="gptq_v2")

    def to_ct(state):
        for name, (qt, _) in layers.items():
            for k in ("qweight", "qzeros", "scales"):
                del state[f"{name}.{k}"]
            off = 8
            state[f"{name}.weight_packed"] = helpers.pack_to_int32((qt.codes.int() - off).to(torch.int8), 4)
            state[f"{name}.weight_zero_point"] = helpers.pack_to_int32((qt.zero - off).to(torch.int8), 4, 0)
            state[f"{name}.weight_scale"] = qt.scale.to(torch.float16)
            state[f"{name}.weight_shape"] = torch.tensor(qt.shape)
            # our own dense packer agrees with compressed-tensors' bytes
            assert torch.equal(state[f"{name}.weight_packed"], to_int32(pack_last(qt.codes, 4)))
        return state

    weights = {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 32}
    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}}}}, to_ct)
    assert_same_logits(tmp_path, ref)


def test_compressed_tensors_int_quantized_w8a8(tmp_path):
    model = tiny_model()
    layers = quantize_block_linears(model, bits=8, group_size=-1, sym=True, packing="gptq_v2")

    def to_ct(state):
        for name, (qt, _) in layers.items():
            for k in ("qweight", "qzeros", "scales"):
                del state[f"{name}.{k}"]
            state[f"{name}.weight"] = (qt.codes.int() - qt.zero).to(torch.int8)
            state[f"{name}.weight_scale"] = qt.scale.to(torch.float16)
        return state

    act = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True}
    weights = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"}
    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "compressed-tensors", "format": "int-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": act}}}}, to_ct)

    def per_token_int8(_module, args):  # compressed-tensors' dynamic per-token rule: scale = amax / 127.5
        scale = args[0].abs().amax(-1, keepdim=True) / 127.5
        return ((args[0] / scale).round().clamp(-128, 127) * scale,)

    for name in layers:
        ref.get_submodule(name).register_forward_pre_hook(per_token_int8)
    assert_same_logits(tmp_path, ref)


def test_mlx_quantization_dict(tmp_path):
    model = tiny_model()
    layers = quantize_block_linears(model, sym=False, packing="mlx", skip=("layers.1.mlp.up_proj",))
    ref = save_quantized(tmp_path, model, layers, {"quantization": {"group_size": 32, "bits": 4,
                                                           "model.layers.1.mlp.up_proj": False}})
    # the stored fp16 biases are the format's truth: rebuild the reference from them
    for name, (qt, _) in layers.items():
        ref.get_submodule(name).weight.data = TORCH_MODULES["mlx"].from_quantized(qt).dequantize_weight()
    assert_same_logits(tmp_path, ref)


def test_fp_formats(tmp_path):
    model = tiny_model()
    names = block_linears(model)
    layers = {}
    for i, name in enumerate(names):
        out, k = model.get_submodule(name).weight.shape
        layers[name] = (random_mx_qt(out, k, 4, seed=i), "mxfp4") if i % 3 == 0 else \
            (random_nvfp4_qt(out, k, seed=i), "nvfp4") if i % 3 == 1 else (random_mx_qt(out, k, 8, seed=i), "mxfp8")
    mx4 = [n for n, (_, p) in layers.items() if p == "mxfp4"]
    nv4 = [n for n, (_, p) in layers.items() if p == "nvfp4"]
    mx8 = [n for n, (_, p) in layers.items() if p == "mxfp8"]
    fp = {"type": "float", "symmetric": True}
    groups = {
        "g0": {"targets": nv4, "format": "nvfp4-pack-quantized",
               "weights": {**fp, "num_bits": 4, "strategy": "tensor_group", "group_size": 16}},
        "g1": {"targets": mx8, "format": "mxfp8-quantized",
               "weights": {**fp, "num_bits": 8, "strategy": "group", "group_size": 32}},
        "g2": {"targets": ["Linear"], "format": "mxfp4-pack-quantized",
               "weights": {**fp, "num_bits": 4, "strategy": "group", "group_size": 32}},
    }
    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "compressed-tensors", "format": "mixed-precision", "ignore": ["lm_head"],
        "config_groups": groups}})
    assert_same_logits(tmp_path, ref)
    assert len(mx4) and len(nv4) and len(mx8)


def test_auto_round_fp8_weight_only(tmp_path):
    model = tiny_model()
    layers = {n: (random_fp8_qt(*model.get_submodule(n).weight.shape, -1, seed=i), "fp8")
              for i, n in enumerate(block_linears(model))}
    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "auto-round", "bits": 8, "group_size": -1, "sym": True, "data_type": "fp"}})
    assert_same_logits(tmp_path, ref)


def test_auto_round_fp8_block_with_scale_inv(tmp_path):
    model = tiny_model()
    layers = {n: (random_fp8_qt(*model.get_submodule(n).weight.shape, (32, 32), seed=i), "fp8")
              for i, n in enumerate(block_linears(model)) if "o_proj" not in n}

    def rename(state):
        return {k.replace(".weight_scale", ".weight_scale_inv"): v for k, v in state.items()}

    ref = save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "auto-round", "bits": 8, "data_type": "fp", "sym": True, "fmt": "e4m3",
        "weight_block_size": [32, 32], "ignored_layers": [f"model.layers.{i}.self_attn.o_proj" for i in range(2)]}},
        rename)
    assert_same_logits(tmp_path, ref)


def test_bits_mismatch_names_layer(tmp_path):
    model = tiny_model()
    save_quantized(tmp_path, model, quantize_block_linears(model, bits=8), {"quantization_config": {
        "quant_method": "auto-round", "packing_format": "auto_round:auto_gptq", "bits": 4, "group_size": 32,
        "sym": True}})
    with pytest.raises(CheckpointError, match=r"layer 'model\.layers\.0\..*qweight has shape"):
        load(tmp_path)


def test_config_and_tensor_kinds_disagree(tmp_path):
    model = tiny_model()
    save_quantized(tmp_path, model, {}, {"quantization_config": {
        "quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True}})
    with pytest.raises(CheckpointError, match=r"layer 'model\.layers\.0\..*says int 4-bit.*stores float"):
        load(tmp_path)
    save_quantized(tmp_path, model, quantize_block_linears(model), {"quantization_config": {
        "quant_method": "auto-round", "bits": 4, "group_size": 32, "sym": True,
        "block_name_to_quantize": "model.nothing"}})
    with pytest.raises(CheckpointError, match="leaves it unquantized"):
        load(tmp_path)


def test_missing_quantization_config(tmp_path):
    model = tiny_model()
    model.config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no quantization_config"):
        load(tmp_path)
