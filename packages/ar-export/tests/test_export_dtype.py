"""Unquantized tensors keep the source checkpoint's 16-bit dtype when the model was loaded in float32 for tuning."""

import json

import pytest
import torch
from safetensors import safe_open

from ar_export import get_writer
from ar_export.dtypes import save_dtype, source_dtype
from ar_export.testing import quantize_model, tiny_llama

# writer -> dtype of its 16-bit tensors for a bf16 source (auto_gptq / auto_awq force fp16 as their consumers expect)
WRITERS = {"auto_round": "BF16", "auto_gptq": "F16", "auto_awq": "F16", "llm_compressor": "BF16", "mlx": "BF16",
           "fake": "BF16"}


def _dtypes(path):
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(f, "pt") as s:
            out.update({k: s.get_slice(k).get_dtype() for k in s.keys()})
    return out


def _bytes(path):
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


@pytest.fixture(scope="module")
def bf16_source(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    tiny_llama().to(torch.bfloat16).save_pretrained(src)
    return src


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_fp32_loaded_model_saves_16bit_tensors_in_source_dtype(fmt, bf16_source, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(bf16_source, dtype=torch.float32)
    assert model.config.dtype == torch.float32  # transformers forgets the source dtype; the files remember it
    out = get_writer(fmt).save(tmp_path / fmt, model, quantize_model(model, "W4A16"), source_dir=bf16_source)
    dtypes = _dtypes(out)
    for key in ("model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight"):
        assert dtypes[key] == WRITERS[fmt], key
    assert "F32" not in {d for k, d in dtypes.items() if not k.endswith("global_scale")}
    assert json.loads((out / "config.json").read_text())["dtype"] == {"BF16": "bfloat16", "F16": "float16"}[
        WRITERS[fmt]]
    if fmt == "fake":
        assert _bytes(out) <= _bytes(bf16_source) + 4096
    else:
        assert _bytes(out) < _bytes(bf16_source)


def test_source_dtype_from_config_then_safetensors_headers(bf16_source, tmp_path):
    assert source_dtype(bf16_source) == torch.bfloat16
    tiny_llama().to(torch.float16).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("dtype", None), cfg.pop("torch_dtype", None)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert source_dtype(tmp_path) == torch.float16
    assert source_dtype(None) is None and source_dtype(tmp_path / "missing") is None


def test_fp32_source_and_16bit_models_keep_their_own_dtype(tmp_path):
    tiny_llama().save_pretrained(tmp_path)  # a float32 source stays float32
    assert save_dtype(tiny_llama(), tmp_path) == torch.float32
    assert save_dtype(tiny_llama().to(torch.float16), tmp_path) == torch.float16
    assert save_dtype(tiny_llama(), None) == torch.float32
