"""Planning from config.json and the safetensors headers gives the plan the meta-device model gives: the same layers
(names, shapes, kinds, blocks, routers, fused groups), LM head, Conv1D layers, tensor order, config dict and resolved
schemes; families it does not know fall back to the meta model and say so."""

from __future__ import annotations

import logging

import pytest
import torch

from ar_core.errors import CheckpointError
from ar_core.layer_config import resolve_plan

from ar_algos.model_free.headers import BASE_DEFAULTS, FAMILIES, config_dict, describe_headers
from ar_algos.model_free.layers import _from_meta, describe_checkpoint, source_config
from ar_algos.model_free.source import read_checkpoint
from ar_algos.tiny import FAMILIES as TINY, tiny_model

CONFIGS = [
    {"scheme": "W4A16G32"},
    {"scheme": "W2A16G32", "layer_config": {"mlp": "W8A16G32", r"layers\.1\..*proj": "W4A16G64"},
     "ignore_layers": "layers.0.self_attn"},
    {"scheme": "W4A16G64", "quant_lm_head": True},
]


def _plans(layout):
    out = []
    for kw in CONFIGS:
        if kw.get("quant_lm_head") and layout.tied:
            continue
        plan = resolve_plan(layout.layers, tied_embeddings=layout.tied, lm_head_name=layout.lm_head,
                            format="auto_round", strict=False, **kw)
        out.append(({n: (e.scheme, e.source, e.pattern) for n, e in plan.entries.items()}, plan.fallbacks))
    return out


def _assert_same_plan(path):
    ckpt = read_checkpoint(path)
    new, old = describe_headers(ckpt), _from_meta(ckpt)
    assert new is not None
    assert new.layers == old.layers and new.lm_head == old.lm_head
    assert new.transposed == old.transposed and new.order == old.order
    # the meta model never ties (its weights are not materialised); a stored checkpoint ties when it has no head
    assert new.tied == (f"{new.lm_head}.weight" not in ckpt.tensors) and old.tied is False
    old.tied = new.tied
    assert _plans(new) == _plans(old)
    assert config_dict(ckpt) == source_config(ckpt.path, ckpt.config)


@pytest.mark.parametrize("family", [f for f in TINY if f != "mixtral"])
def test_header_plan_equals_the_meta_model_plan(tmp_path, family):
    tiny_model(family, dtype=torch.bfloat16).save_pretrained(tmp_path, max_shard_size="60KB")
    _assert_same_plan(tmp_path)


def test_base_defaults_are_what_transformers_leaves_out():
    from transformers import PretrainedConfig

    base = PretrainedConfig().to_dict()
    assert {k: base[k] for k in BASE_DEFAULTS} == BASE_DEFAULTS
    assert set(base) - set(BASE_DEFAULTS) == {"transformers_version", "architectures", "dtype", "_name_or_path",
                                              "model_type"}


def test_other_families_fall_back_to_the_meta_model_and_say_so(tmp_path, caplog):
    tiny_model("mixtral", dtype=torch.bfloat16).save_pretrained(tmp_path)  # experts stored as w1/w2/w3
    ckpt = read_checkpoint(tmp_path)
    assert "mixtral" not in FAMILIES and describe_headers(ckpt) is None
    with caplog.at_level(logging.WARNING, logger="ar_algos.model_free"):
        layout, _ = describe_checkpoint(ckpt)
    assert "planning from a meta-device model" in caplog.text and "'mixtral'" in caplog.text
    assert layout.order == _from_meta(ckpt).order


def test_a_config_from_another_transformers_version_is_read_by_transformers(tmp_path, caplog):
    tiny_model("llama", dtype=torch.bfloat16).save_pretrained(tmp_path)
    ckpt = read_checkpoint(tmp_path)
    ckpt.config["transformers_version"] = "4.40.0"
    assert config_dict(ckpt) is None
    with caplog.at_level(logging.WARNING, logger="ar_algos.model_free"):
        _, config = describe_checkpoint(ckpt)
    assert "written by transformers 4.40.0" in caplog.text
    assert config["_name_or_path"] == str(tmp_path) and config["vocab_size"] == 128


def _embedded(name):
    from ar_algos.models import embedded_model_path

    try:
        return embedded_model_path(name)
    except CheckpointError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_header_plan_equals_the_meta_model_plan_on_real_models(name):
    _assert_same_plan(_embedded(name))
