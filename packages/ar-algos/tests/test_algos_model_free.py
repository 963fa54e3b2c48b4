"""Model-free mode: byte parity with the regular RTN path, bounded memory, layer selection, worker processes."""

from __future__ import annotations

import filecmp
import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ar_core.errors import ArError
from ar_core.registry import FORMATS

from ar_algos.model_free import quantize_model_free
from ar_algos.tiny import tiny_model


def _register_auto_round():
    if not FORMATS.is_available("auto_round"):
        ar_export = pytest.importorskip("ar_export")
        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """A tiny random bf16 Llama saved as 8 shards (every width a multiple of 32)."""
    _register_auto_round()
    path = tmp_path_factory.mktemp("mf") / "src"
    model = tiny_model("llama", dtype=torch.bfloat16, hidden_size=128, intermediate_size=256)
    model.save_pretrained(path, max_shard_size="100KB")
    assert len(list(path.glob("*.safetensors"))) > 2
    return path


def _regular(src, out, scheme, **kw):
    from transformers import AutoModelForCausalLM

    from ar_algos.autoround import AutoRound

    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    AutoRound(model, scheme=scheme, iters=0, disable_opt_rtn=True, verbose=False, **kw).quantize_and_save(out)


def _same_dirs(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    return {n: filecmp.cmp(a / n, b / n, shallow=False) for n in names}


@pytest.mark.parametrize("scheme, kw", [
    ("W4A16G32", {}),
    ({"bits": 2, "group_size": 32, "sym": False}, {}),
    ("W8A16", {"layer_config": {"mlp.down_proj": "W2A16G64"}, "ignore_layers": "layers.1.self_attn.o_proj"}),
    ({"bits": 4, "group_size": 32, "sym": False}, {"quant_lm_head": True}),
    ("MXFP4", {}),
    ("MXFP8", {}),
])
def test_output_is_byte_identical_to_the_regular_rtn_path(src, tmp_path, scheme, kw):
    _regular(src, tmp_path / "reg", scheme, **kw)
    result = quantize_model_free(src, tmp_path / "free", scheme=scheme, **kw)
    same = _same_dirs(tmp_path / "reg", tmp_path / "free")
    assert all(same.values()), same
    assert "model.safetensors" in same and "generation_config.json" in same
    assert result.plan.quantized()
    with safe_open(str(tmp_path / "free" / "model.safetensors"), "pt") as f:
        head_packed = not any(k == "lm_head.weight" for k in f.keys())
    assert head_packed == bool(kw.get("quant_lm_head"))


def test_worker_processes_give_the_same_bytes(src, tmp_path):
    one = quantize_model_free(src, tmp_path / "one", scheme="W4A16G32", workers=1)
    two = quantize_model_free(src, tmp_path / "two", scheme="W4A16G32", workers=2, max_shard_size="150KB")
    three = quantize_model_free(src, tmp_path / "three", scheme="W4A16G32", workers=1, max_shard_size="150KB")
    assert one.worker_peak_bytes == three.worker_peak_bytes
    same = _same_dirs(tmp_path / "two", tmp_path / "three")
    assert all(same.values()) and len([n for n in same if n.endswith(".safetensors")]) > 1


def test_workers_split_a_one_file_checkpoint_and_give_the_same_bytes(src, tmp_path):
    from ar_algos.model_free.run import split_keys

    single = tmp_path / "single"
    model = tiny_model("llama", dtype=torch.bfloat16, hidden_size=128, intermediate_size=256)
    model.save_pretrained(single)
    assert [p.name for p in single.glob("*.safetensors")] == ["model.safetensors"]
    quantize_model_free(single, tmp_path / "one", scheme="W4A16G32", workers=1)
    quantize_model_free(single, tmp_path / "two", scheme="W4A16G32", workers=2)
    assert all(_same_dirs(tmp_path / "one", tmp_path / "two").values())
    sizes = {"a": 10, "b": 10, "c": 10, "d": 70, "e": 1}
    assert split_keys(list(sizes), sizes, 2) == [["a", "b", "c"], ["d", "e"]]
    assert split_keys(list(sizes), sizes, 9) == [[k] for k in sizes]


def test_memory_held_stays_below_two_source_shards(src, tmp_path):
    r = quantize_model_free(src, tmp_path / "o", scheme="W4A16G32", max_shard_size="100KB")
    assert 0 < r.worker_peak_bytes < 2 * r.largest_source_shard_bytes
    assert r.output_peak_bytes < 2 * r.largest_source_shard_bytes


def test_layer_selection_and_packed_shapes(src, tmp_path):
    out = tmp_path / "o"
    quantize_model_free(src, out, scheme="W4A16G32", layer_config={"mlp.down_proj": "W8A16"},
                        ignore_layers="layers.0.self_attn.o_proj")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("model.layers.0.self_attn.o_proj.weight").dtype == torch.bfloat16
        assert f.get_tensor("model.layers.0.mlp.down_proj.qweight").shape == (256 * 8 // 32, 128)
        assert f.get_tensor("model.layers.1.self_attn.q_proj.qweight").shape == (128 * 4 // 32, 128)
        zeros = f.get_tensor("model.layers.1.self_attn.q_proj.qzeros")
        assert (zeros == 0x77777777).all()  # sym 4-bit: zero 8 stored as zero-1 (auto_round:auto_gptq)
    assert {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"} <= keys
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["packing_format"] == "auto_round:auto_gptq" and qc["quant_method"] == "auto-round"
    assert qc["extra_config"]["model.layers.0.self_attn.o_proj"] == {"bits": 16}


def test_unsupported_scheme_is_refused_before_writing(src, tmp_path):
    for scheme in ("W3A16", "NVFP4", "FP8_STATIC"):
        with pytest.raises(ArError, match="model-free mode supports"):
            quantize_model_free(src, tmp_path / "o", scheme=scheme)
    assert not (tmp_path / "o").exists()


def _moe_checkpoint(path):
    """An unknown architecture (no meta model): one block with a router, a shared-expert gate and two experts."""
    path.mkdir()
    g = torch.Generator().manual_seed(0)
    w = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)  # noqa: E731
    b = "model.layers.0.mlp."
    tensors = {"model.embed_tokens.weight": w(64, 32), f"{b}gate.weight": w(2, 32),
               f"{b}shared_expert_gate.weight": w(1, 32), "model.layers.0.input_layernorm.weight": w(32),
               "lm_head.weight": w(64, 32)}
    for e in range(2):
        tensors[f"{b}experts.{e}.up_proj.weight"] = w(64, 32)
        tensors[f"{b}experts.{e}.down_proj.weight"] = w(32, 64)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"], "model_type": "nosuch"}))
    (path / "tokenizer.json").write_text("{}")
    return tensors


def test_unknown_architecture_uses_names_and_shapes(tmp_path):
    _register_auto_round()
    tensors = _moe_checkpoint(tmp_path / "src")
    r = quantize_model_free(tmp_path / "src", tmp_path / "o", scheme="W4A16G32")
    b = "model.layers.0.mlp."
    assert sorted(r.plan.quantized()) == sorted(f"{b}experts.{e}.{p}" for e in range(2)
                                                for p in ("up_proj", "down_proj"))
    assert r.plan.entries[f"{b}gate"].source == "predefined"
    with safe_open(str(tmp_path / "o" / "model.safetensors"), "pt") as f:
        for k in ("model.embed_tokens.weight", f"{b}gate.weight", "lm_head.weight"):
            assert torch.equal(f.get_tensor(k), tensors[k])
        assert f"{b}experts.1.down_proj.qweight" in f.keys()
    assert (tmp_path / "o" / "tokenizer.json").is_file()


def test_an_autoscheme_layer_config_exports_model_free_with_parity(src, tmp_path):
    from transformers import AutoModelForCausalLM

    from ar_algos.autoscheme import AutoScheme

    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    search = AutoScheme(3.0, "W2A16G32,W4A16G32,W8A16G32", verbose=False)
    config = search.search(model, samples=[{"input_ids": torch.arange(16)[None] % 128,
                                            "attention_mask": torch.ones(1, 16, dtype=torch.long)}])
    assert len(set(config.values())) > 1
    _regular(src, tmp_path / "reg", "W2A16G32", layer_config=config)
    quantize_model_free(src, tmp_path / "free", scheme="W2A16G32", layer_config=config)
    same = _same_dirs(tmp_path / "reg", tmp_path / "free")
    assert all(same.values()), same
    qc = json.loads((tmp_path / "free" / "config.json").read_text())["quantization_config"]
    assert {e.get("bits") for e in qc["extra_config"].values()} - {None} <= {4, 8}


def test_moe_checkpoint_matches_the_regular_path(tmp_path):
    _register_auto_round()
    tiny_model("qwen3_moe", dtype=torch.bfloat16).save_pretrained(tmp_path / "src")
    _regular(tmp_path / "src", tmp_path / "reg", "W4A16G32")
    r = quantize_model_free(tmp_path / "src", tmp_path / "free", scheme="W4A16G32")
    assert sum(".experts." in n for n in r.plan.quantized()) == 2 * 4 * 3
    same = _same_dirs(tmp_path / "reg", tmp_path / "free")
    assert all(same.values()), same
