"""`ar_kernels.convert`: GPTQ / AWQ checkpoints re-stored as auto_round with the exact codes (autoround.md §5.1)."""

import json

import pytest
import torch
from safetensors.torch import load_file

import ar_kernels
from ar_core.errors import CheckpointError
from ar_kernels.qlinear import QuantLinear
from ar_kernels.testing import quantize_block_linears, save_quantized, tiny_llama

pytest.importorskip("ar_export")  # the auto_round writer comes from ar-export through ar_core.registry.FORMATS


def quant_config(path):
    return json.loads((path / "config.json").read_text())["quantization_config"]


def assert_same_model(src, dst):
    a, b = ar_kernels.load(src), ar_kernels.load(dst)
    qa = {n: m for n, m in a.named_modules() if isinstance(m, QuantLinear)}
    qb = {n: m for n, m in b.named_modules() if isinstance(m, QuantLinear)}
    assert qa.keys() == qb.keys() and qa
    for name in qa:
        assert qa[name].scheme == qb[name].scheme, name
        assert torch.equal(qa[name].dequantize_weight(), qb[name].dequantize_weight()), name
    ids = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)
    return qb


def add_g_idx(layers, model, permute=False):
    def hook(state):
        for name in layers:
            k = model.get_submodule(name).in_features
            g = torch.arange(k) // 32
            state[f"{name}.g_idx"] = (g[torch.randperm(k)] if permute else g).to(torch.int32)
        return state
    return hook


def test_gptq_to_auto_round_keeps_bytes(tmp_path):
    src, dst = tmp_path / "gptq", tmp_path / "ar"
    src.mkdir()
    model = tiny_llama(64, 128)
    layers = quantize_block_linears(model, skip=("v_proj",), bits_by_suffix={"down_proj": 8})
    save_quantized(src, model, layers, {"quantization_config": {
        "quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True, "desc_act": False,
        "dynamic": {"-:.*v_proj": {}, "+:.*down_proj": {"bits": 8}}}}, add_g_idx(layers, model))
    assert ar_kernels.convert(src, dst, format="auto_round") == dst
    qc = quant_config(dst)
    assert qc["quant_method"] == "auto-round" and qc["packing_format"] == "auto_round:auto_gptq"
    qb = assert_same_model(src, dst)
    assert "model.layers.0.self_attn.v_proj" not in qb and qb["model.layers.1.mlp.down_proj"].scheme.bits == 8
    before, after = load_file(src / "model.safetensors"), load_file(dst / "model.safetensors")
    for name in layers:  # GPTQ v1 and auto_round:auto_gptq share one layout: identical packed words
        for suffix in ("qweight", "qzeros", "scales"):
            assert torch.equal(before[f"{name}.{suffix}"], after[f"{name}.{suffix}"]), (name, suffix)


def test_awq_to_auto_round(tmp_path):
    src, dst = tmp_path / "awq", tmp_path / "ar"
    src.mkdir()
    model = tiny_llama(64, 128).half()  # auto_round:auto_awq stores fp16 (§5.1), as real AWQ checkpoints do
    model.config.dtype = torch.float16
    layers = quantize_block_linears(model, sym=False, packing="awq", skip=("o_proj",))
    save_quantized(src, model, layers, {"quantization_config": {
        "quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm",
        "modules_to_not_convert": ["o_proj"]}})
    ar_kernels.convert(src, dst)
    qc = quant_config(dst)
    assert qc["packing_format"] == "auto_round:auto_awq" and qc["sym"] is False
    qb = assert_same_model(src, dst)
    assert len(qb) == 12 and all(m.packing == "awq" for m in qb.values())


def test_asym_gptq_8bit_to_raw_zeros(tmp_path):
    src, dst = tmp_path / "gptq", tmp_path / "ar"
    src.mkdir()
    model = tiny_llama(64, 128)
    layers = quantize_block_linears(model, bits=8, sym=False)
    save_quantized(src, model, layers, {"quantization_config": {
        "quant_method": "gptq", "bits": 8, "group_size": 32, "sym": False}})
    ar_kernels.convert(src, dst)
    assert quant_config(dst)["packing_format"] == "auto_round"
    qb = assert_same_model(src, dst)
    assert all(m.packing == "gptq_v2" for m in qb.values())


def test_act_order_is_refused_and_nothing_written(tmp_path):
    src, dst = tmp_path / "gptq", tmp_path / "ar"
    src.mkdir()
    model = tiny_llama(64, 128)
    layers = quantize_block_linears(model)
    save_quantized(src, model, layers, {"quantization_config": {
        "quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True, "desc_act": True}},
        add_g_idx(layers, model, permute=True))
    with pytest.raises(CheckpointError, match="g_idx reorders"):
        ar_kernels.convert(src, dst)
    assert not dst.exists()
