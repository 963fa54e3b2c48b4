"""Writers without their consumers: files, configs, per-layer entries, errors (fast)."""

import json
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ar_core.errors import ArError, CheckpointError, SchemeError
from ar_core.presets import parse_scheme
from ar_core.registry import FORMATS
from ar_export import format_matrix, get_writer, register_all
from ar_export.testing import quantize_model, tiny_llama, tiny_tokenizer

MIXED = {"down_proj": "W8A16", "k_proj": {"bits": 16}}


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _tensors(path: Path) -> dict:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(f, "pt") as s:
            out.update({k: s.get_tensor(k) for k in s.keys()})
    return out


def _qc(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())["quantization_config"]


def test_register_all_and_entry_points():
    names = register_all()
    for n in ("auto_round", "auto_round_mlx", "auto_gptq", "auto_awq", "llm_compressor", "mlx", "fp8", "fake"):
        assert n in names and FORMATS.get(n).supports(parse_scheme("W4A16")) == (n not in ("fp8",))
    toml = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    eps = toml["project"]["entry-points"]["ar.formats"]
    for n in names:
        module, attr = eps[n].split(":")
        assert getattr(__import__(module, fromlist=[attr]), attr) is FORMATS.get(n)


def test_format_matrix_reads_the_support_table():
    m = format_matrix(["W4A16", "W3A16", "W5A16", "MXFP4", "NVFP4", "FP8_BLOCK", "INT8_W8A8"])
    assert m["auto_round"] == {"W4A16": True, "W3A16": True, "W5A16": False, "MXFP4": True, "NVFP4": True,
                               "FP8_BLOCK": False, "INT8_W8A8": False}
    assert m["mlx"]["W5A16"] and not m["auto_gptq"]["W5A16"] and not m["auto_awq"]["W3A16"]
    assert m["fp8"]["FP8_BLOCK"] and m["llm_compressor"]["INT8_W8A8"] and all(m["fake"].values())


def test_check_names_layer_and_other_formats():
    with pytest.raises(SchemeError, match=r"layer 'x'.*formats that hold it: .*mlx"):
        get_writer("auto_gptq").check({"x": parse_scheme("W5A16")})
    with pytest.raises(SchemeError, match="one family"):
        get_writer("auto_round").check({"a": parse_scheme("W4A16"), "b": parse_scheme("MXFP4")})


def test_auto_round_files_and_mixed_config(tmp_path, model, tokenizer):
    q = quantize_model(model, "W4A16", skip=(), overrides={**MIXED, "lm_head": "W8A16"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "modeling_custom.py").write_text("X = 1\n")
    (src / "generation_config.json").write_text('{"do_sample": false}')
    out = get_writer("auto_round").save(tmp_path / "out", model, q, tokenizer=tokenizer, source_dir=src,
                                        run_info={"iters": 0, "nsamples": None})
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "quantization_config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
            "modeling_custom.py", "generation_config.json"} <= names
    qc = _qc(out)
    assert qc == json.loads((out / "quantization_config.json").read_text())
    assert qc["packing_format"] == "auto_round:auto_gptq" and qc["quant_method"] == "auto-round"
    assert qc["block_name_to_quantize"] == "model.layers" and qc["iters"] == 0 and "nsamples" not in qc
    assert qc["extra_config"]["model.layers.1.mlp.down_proj"] == {"bits": 8}
    assert qc["extra_config"]["model.layers.0.self_attn.k_proj"] == {"bits": 16}
    assert qc["extra_config"]["lm_head"] == {"bits": 8, "group_size": 128, "sym": True, "data_type": "int"}
    t = _tensors(out)
    assert t["model.layers.0.mlp.down_proj.qweight"].shape == (512 * 8 // 32, 256)
    assert t["model.layers.0.self_attn.k_proj.weight"].shape == (128, 256)
    assert "model.layers.0.self_attn.q_proj.weight" not in t and "lm_head.qweight" in t
    with pytest.raises(CheckpointError, match="overwrite"):
        get_writer("auto_round").save(out, model, q)


def test_auto_gptq_dynamic_and_modules_in_block(tmp_path, model):
    q = quantize_model(model, "W4A16", overrides=MIXED)
    out = get_writer("auto_gptq").save(tmp_path / "g", model, q)
    qc = _qc(out)
    assert qc["quant_method"] == "gptq" and qc["desc_act"] is False and qc["lm_head"] is False
    assert qc["dynamic"][r"+:^model\.layers\.0\.mlp\.down_proj$"] == {"bits": 8, "group_size": 128, "sym": True}
    assert qc["dynamic"][r"-:^model\.layers\.1\.self_attn\.k_proj$"] == {}
    assert qc["modules_in_block_to_quantize"] == [["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj",
                                                   "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj"]]
    t = _tensors(out)
    assert t["model.layers.0.self_attn.q_proj.g_idx"].dtype == torch.int32
    assert t["model.embed_tokens.weight"].dtype == torch.float16


def test_auto_awq_config_and_refusals(tmp_path, model):
    q = quantize_model(model, {"scheme": "W4A16", "sym": False}, overrides={"k_proj": {"bits": 16}})
    out = get_writer("auto_awq").save(tmp_path / "a", model, q)
    qc = _qc(out)
    assert qc["zero_point"] is True and qc["version"] == "gemm"
    assert qc["modules_to_not_convert"] == ["model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.k_proj",
                                            "lm_head"]
    assert _tensors(out)["model.layers.0.self_attn.q_proj.qweight"].shape == (256, 32)
    with pytest.raises(SchemeError):
        get_writer("auto_awq").check({"a": parse_scheme("W4A16"), "b": parse_scheme("W4G32")})


def test_mlx_quantization_dict(tmp_path, model):
    q = quantize_model(model, "W4A16", overrides=MIXED)
    out = get_writer("mlx").save(tmp_path / "m", model, q)
    cfg = json.loads((out / "config.json").read_text())
    quant = cfg["quantization"]
    assert quant == cfg["quantization_config"]
    assert quant["bits"] == 4 and quant["group_size"] == 128
    assert quant["model.layers.0.mlp.down_proj"] == {"group_size": 128, "bits": 8}
    assert quant["model.layers.0.self_attn.k_proj"] is False and quant["lm_head"] is False
    assert quant["model.embed_tokens"] is False
    with pytest.raises(ArError, match="group_size"):
        get_writer("mlx").save(tmp_path / "bad", model, quantize_model(model, "W4G16"))
    assert not (tmp_path / "bad").exists()


def test_llm_compressor_mixed_groups(tmp_path, model):
    q = quantize_model(model, "W4A16", overrides=MIXED)
    qc = _qc(get_writer("llm_compressor").save(tmp_path / "c", model, q))
    g0, g1 = qc["config_groups"]["group_0"], qc["config_groups"]["group_1"]
    assert g0["weights"]["num_bits"] == 4 and g1["targets"] == ["model.layers.0.mlp.down_proj",
                                                                 "model.layers.1.mlp.down_proj"]
    assert qc["format"] == "pack-quantized" and "model.layers.0.self_attn.k_proj" in qc["ignore"]


def test_fake_writes_dequantized_weights_and_unties(tmp_path):
    model = tiny_llama(tie_word_embeddings=True)
    q = quantize_model(model, "W2A16")
    out = get_writer("fake").save(tmp_path / "f", model, q)
    t = _tensors(out)
    assert "lm_head.weight" not in t  # tied to embed_tokens: stored once
    assert torch.equal(t["model.layers.0.mlp.up_proj.weight"], q["model.layers.0.mlp.up_proj"].dequantize())
    assert "quantization_config" not in json.loads((out / "config.json").read_text())


def test_unknown_layer_is_refused_before_writing(tmp_path, model):
    q = quantize_model(model, "W4A16")
    q["model.nope"] = q.pop("model.layers.0.mlp.up_proj")
    with pytest.raises(CheckpointError, match="model.nope"):
        get_writer("auto_round").save(tmp_path / "x", model, q)
    assert not (tmp_path / "x").exists()


def test_sixteen_bit_records_are_kept_and_nothing_quantized_is_refused(tmp_path, model):
    q = quantize_model(model, "W4A16")
    q["model.layers.0.mlp.up_proj"] = quantize_model(model, "W4A16")["model.layers.0.mlp.up_proj"]
    from ar_core.qtensor import QuantizedTensor

    w = model.model.layers[0].mlp.gate_proj.weight
    q["model.layers.0.mlp.gate_proj"] = QuantizedTensor(w, torch.ones(1), None, parse_scheme({"bits": 16}),
                                                        tuple(w.shape))
    qc = _qc(get_writer("mlx").save(tmp_path / "m", model, q))
    assert qc["model.layers.0.mlp.gate_proj"] is False
    with pytest.raises(ArError, match="at least one quantized"):
        get_writer("auto_round").save(tmp_path / "none", model, {})
