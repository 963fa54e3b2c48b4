"""Every writer proven by its real consumer on a tiny random Llama (slow: imports auto-round, gptqmodel, ...).

Weight-only schemes: the consumer's logits equal those of our own dequantized model within fp16/bf16 compute
rounding (2% of the logit range; quantization itself moves them by 10-100%). Schemes that quantize activations: the
consumer's dequantized weight of every layer equals ours (bf16 rounding of FP8 scales at most).
"""

import os

import pytest
import torch

from ar_export import get_writer
from ar_export.testing import calibration_texts, dequantized_copy, quantize_model, tiny_llama, tiny_tokenizer

pytestmark = pytest.mark.slow
os.environ.setdefault("HF_HUB_OFFLINE", "1")
MIXED = {"down_proj": "W8A16", "k_proj": {"bits": 16}}
ASYM = {"sym": False}


@pytest.fixture(scope="module")
def base():
    model, tok = tiny_llama(), tiny_tokenizer()
    ids = tok(calibration_texts(1)[0], return_tensors="pt").input_ids[:, :40]
    return model, tok, ids


def _export(tmp_path, base, fmt, scheme, overrides=None, skip=("lm_head",)):
    model, tok, _ = base
    q = quantize_model(model, scheme, skip=skip, overrides=overrides)
    for qt in q.values():
        qt.extras.setdefault("act_max", torch.tensor(6.0))  # static activation schemes need a calibrated max
    out = get_writer(fmt).save(tmp_path / "ckpt", model, q, tokenizer=tok)
    return out, q


def _close_logits(logits, base, q):
    model, _, ids = base
    with torch.no_grad():
        ref = dequantized_copy(model, q)(ids).logits.float()
        fp = model(ids).logits.float()
    err = (logits.float() - ref).abs().max().item()
    assert err <= 0.02 * ref.abs().max().item(), (err, ref.abs().max().item())
    assert err < (fp - ref).abs().max().item()  # far below the quantization error itself


def _load_hf(path, dtype=torch.float32, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map="cpu", **kw).eval()


def _consumer_weight(mod):
    """The consumer module's dequantized weight [out, in] (None when the kernel exposes none)."""
    if hasattr(mod, "quantization_scheme"):
        weight = getattr(mod, "weight", None)
        if weight is None or not weight.is_floating_point() or weight.element_size() == 1:
            from compressed_tensors.compressors.base import decompress_module

            decompress_module(mod)
        return mod.weight.float()
    if hasattr(mod, "dequant_weight_online"):
        return mod.dequant_weight_online().float()
    weight = getattr(mod, "weight", None)
    return weight.float() if weight is not None and weight.element_size() > 1 else None


def _same_weights(lm, q, rel=2.0**-7):
    mods = dict(lm.named_modules())
    checked = 0
    for name, qt in q.items():
        w = _consumer_weight(mods[name])
        assert w is not None, f"{name}: {type(mods[name])} exposes no dequantized weight"
        ours = qt.dequantize()
        torch.testing.assert_close(w, ours, rtol=0, atol=rel * ours.abs().max().item())
        checked += 1
    assert checked == len(q)


def _logits(lm, base):
    with torch.no_grad():
        return lm(base[2]).logits


# --- auto_round through transformers + auto-round -------------------------------------------------------------
@pytest.mark.parametrize("scheme,overrides,packing", [
    ("W4A16", None, "auto_round:auto_gptq"),
    ("W3A16", None, "auto_round:auto_gptq"),
    ("W8A16", None, "auto_round:auto_gptq"),
    ({"scheme": "W2A16", **ASYM}, None, "auto_round"),
    ({"scheme": "W4A16", **ASYM}, None, "auto_round:auto_awq"),
    ("W4A16", {**MIXED, "lm_head": "W8A16"}, "auto_round:auto_gptq"),
])
def test_auto_round_int_loads_in_transformers(tmp_path, base, scheme, overrides, packing):
    skip = () if overrides and "lm_head" in overrides else ("lm_head",)
    out, q = _export(tmp_path, base, "auto_round", scheme, overrides, skip=skip)
    import json

    assert json.loads((out / "config.json").read_text())["quantization_config"]["packing_format"] == packing
    lm = _load_hf(out)
    assert type(lm.model.layers[0].self_attn.q_proj) is not torch.nn.Linear  # a quantized kernel module
    _close_logits(_logits(lm, base), base, q)


@pytest.mark.parametrize("scheme", ["MXFP4", "MXFP8", "MXINT4", "NVFP4", "FP8_STATIC"])
def test_auto_round_fp_loads_in_transformers(tmp_path, base, scheme):
    out, q = _export(tmp_path, base, "auto_round", scheme)
    _same_weights(_load_hf(out, torch.bfloat16), q)


# --- auto_gptq through transformers + optimum + gptqmodel; auto_awq through gptqmodel --------------------------
def test_auto_gptq_loads_through_gptqmodel(tmp_path, base):
    out, q = _export(tmp_path, base, "auto_gptq", "W4A16")
    lm = _load_hf(out)
    assert type(lm.model.layers[0].mlp.up_proj).__module__.startswith("gptqmodel")
    _close_logits(_logits(lm, base), base, q)


@pytest.mark.parametrize("scheme", ["W2A16", "W8A16", {"scheme": "W3A16", "group_size": 64}])
def test_auto_gptq_other_bits_load_through_auto_round(tmp_path, base, scheme):
    """gptqmodel JIT-builds a C++ kernel (~50 s) for non-4-bit widths on CPU; auto-round reads the same files."""
    from transformers import AutoRoundConfig

    out, q = _export(tmp_path, base, "auto_gptq", scheme)
    _close_logits(_logits(_load_hf(out, quantization_config=AutoRoundConfig()), base), base, q)


def test_auto_gptq_mixed_bits_load_through_auto_round(tmp_path, base):
    from transformers import AutoRoundConfig

    out, q = _export(tmp_path, base, "auto_gptq", "W4A16", {**MIXED, "lm_head": "W8A16"}, skip=())
    lm = _load_hf(out, quantization_config=AutoRoundConfig())
    assert isinstance(lm.model.layers[0].self_attn.k_proj, torch.nn.Linear)
    _close_logits(_logits(lm, base), base, q)


@pytest.mark.parametrize("scheme", ["W4A16", {"scheme": "W4A16", **ASYM, "group_size": 64}])
def test_auto_awq_loads_through_gptqmodel(tmp_path, base, scheme):
    out, q = _export(tmp_path, base, "auto_awq", scheme, {"k_proj": {"bits": 16}})
    lm = _load_hf(out)
    assert "Awq" in type(lm.model.layers[0].mlp.up_proj).__name__
    _close_logits(_logits(lm, base), base, q)


# --- llm_compressor through transformers + compressed-tensors ---------------------------------------------------
@pytest.mark.parametrize("scheme,overrides", [("W4A16", None), ("W8A16", None), ({"scheme": "W4A16", "group_size": -1},
                                              None), ("W2A16", None), ("W4A16", MIXED)])
def test_llm_compressor_int_loads_in_transformers(tmp_path, base, scheme, overrides):
    out, q = _export(tmp_path, base, "llm_compressor", scheme, overrides)
    lm = _load_hf(out)
    _close_logits(_logits(lm, base), base, q)
    _same_weights(lm, q, rel=2.0**-10)


@pytest.mark.parametrize("scheme", ["INT8_W8A8", "MXFP4", "MXFP8", "NVFP4", "FP8_STATIC", "FP8_BLOCK", "FPW8A16"])
def test_llm_compressor_act_schemes_load_in_transformers(tmp_path, base, scheme):
    out, q = _export(tmp_path, base, "llm_compressor", scheme)
    _same_weights(_load_hf(out, torch.bfloat16), q)


def test_llm_compressor_asym_decompresses_with_compressed_tensors(tmp_path, base):
    """transformers 5.23 + compressed-tensors 0.20 cannot load asym pack-quantized (it expects an unpacked zero
    point while the compressor packs it); compressed-tensors' own decompressor reads our tensors exactly."""
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from safetensors.torch import load_file

    out, q = _export(tmp_path, base, "llm_compressor", {"scheme": "W4A16", **ASYM})
    import json

    group = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]["group_0"]
    scheme = QuantizationScheme(targets=group["targets"], weights=group["weights"])
    tensors = load_file(out / "model.safetensors")
    name = "model.layers.1.mlp.down_proj"
    sd = {k.removeprefix(name + "."): v for k, v in tensors.items() if k.startswith(name + ".")}
    w = PackedQuantizationCompressor.decompress(sd, scheme)["weight"].float()
    torch.testing.assert_close(w, q[name].dequantize(), rtol=0, atol=1e-3 * w.abs().max().item())


# --- mlx and auto_round:mlx through mlx-lm (mlx[cpu]) -------------------------------------------------------------
@pytest.mark.parametrize("fmt,scheme,overrides", [
    ("mlx", "W4A16", MIXED), ("mlx", "W2A16G32", None), ("mlx", {"scheme": "W3A16", "group_size": 64}, None),
    ("mlx", {"scheme": "W5A16", **ASYM, "group_size": 32}, None), ("mlx", {"scheme": "W6A16", "group_size": 64}, None),
    ("mlx", "W8A16", None), ("auto_round:mlx", "W4A16", {"down_proj": "W8A16"}),
])
def test_mlx_loads_in_mlx_lm(tmp_path, base, fmt, scheme, overrides):
    import mlx.core as mx
    from mlx_lm import load

    out, q = _export(tmp_path, base, fmt, scheme, overrides)
    model, _ = load(str(out))
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "QuantizedLinear"
    logits = model(mx.array(base[2].numpy())).astype(mx.float32)
    _close_logits(torch.from_numpy(__import__("numpy").array(logits)), base, q)


# --- fp8 (FP8_BLOCK) tensors read by transformers' fine-grained FP8 loader -------------------------------------
def test_fp8_block_tensors_load_as_fine_grained_fp8(tmp_path, base):
    """auto-round 0.16.1 cannot load block FP8 itself (it compares a list group_size with 0), so the layout is proven
    by transformers' `fp8` quantizer, which reads the same weight / weight_scale_inv tensors (dequantize=True)."""
    import json

    out, q = _export(tmp_path, base, "fp8", "FP8_BLOCK")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"]["weight_block_size"] == [128, 128]
    cfg["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128],
                                  "activation_scheme": "dynamic", "dequantize": True}
    (out / "config.json").write_text(json.dumps(cfg))
    _same_weights(_load_hf(out, torch.bfloat16), q)
