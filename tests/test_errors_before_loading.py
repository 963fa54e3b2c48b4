"""Checks that fire before any weight is loaded (issue 18 row 7): scheme x format pairs, layer_config / ignore_layers
patterns (an invalid regex, a name that matches no layer) and calibration files (missing, empty, wrong keys, not
UTF-8), through the CLI and the API. Loading the model is made to fail the test, so each error provably comes
first; nothing is left in the output folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ar_algos.models
from ar_algos import AutoRound
from ar_cli.testing import run_cli as _cli
from ar_core.errors import DataError, LayerConfigError, SchemeError
from ar_core.presets import parse_scheme
from ar_export.testing import save_tiny_model

FAST = ["--iters", "0", "--nsamples", "2", "--seqlen", "8"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("preflight") / "tiny")


@pytest.fixture
def no_weights(monkeypatch):
    """Loading the model (ar_algos.models.resolve_model, the only way AutoRound reads weights) fails the test."""
    def loaded(*args, **kwargs):
        raise AssertionError("the model's weights were loaded before the check")

    monkeypatch.setattr(ar_algos.models, "resolve_model", loaded)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight-data")
    (root / "empty.txt").write_text("")
    (root / "empty.json").write_text("[]")
    (root / "keys.jsonl").write_text('{"foo": "x", "bar": "y"}\n')
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    return root




def _nothing_left(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize("flags, needle", [
    (["--scheme", "NVFP4", "--format", "auto_gptq"],
     r"scheme of layer 'model\.layers\.0\..*nv_fp 4-bit.* is not allowed: format 'auto_gptq' holds int_sym "
     r"\[2, 3, 4, 8\].*formats that hold it: auto_round"),
    (["--bits", "3", "--format", "auto_awq"],
     r"int_sym 3-bit.* is not allowed: format 'auto_awq' holds int_sym \[4\]"),
    (["--scheme", "MXFP4", "--format", "gguf"],
     r"'data_type': 'mx_fp'.* is not allowed: a GGUF type .*use a GGUF:\* preset"),
], ids=["nvfp4_gptq", "w3_awq", "mxfp4_gguf"])
def test_scheme_format_pair_before_loading(capsys, model_dir, tmp_path, no_weights, flags, needle):
    """The CLI knows the formats up front (the API learns them in quantize_and_save, after the constructor loaded
    the model; `ar_algos.preflight.check_before_loading` runs the same check for API users who call it)."""
    rc, err = _cli(capsys, ["quantize", str(model_dir), *FAST, "--output_dir", str(tmp_path / "out"), *flags])
    assert rc == 1 and re.search(needle, err), err
    _nothing_left(tmp_path / "out")


def test_api_plain_rtn_checks_the_format_before_loading(model_dir, tmp_path, no_weights):
    """Plain RTN of a local directory defers loading to quantize_and_save, which knows the format."""
    ar = AutoRound(str(model_dir), iters=0, disable_opt_rtn=True, bits=2)
    with pytest.raises(SchemeError, match=r"int_sym 2-bit.* is not allowed: format 'auto_awq' holds int_sym \[4\]"):
        ar.quantize_and_save(tmp_path / "out" / "q", format="auto_awq")
    _nothing_left(tmp_path / "out")


def test_check_before_loading_api(model_dir, no_weights):
    from ar_algos.preflight import check_before_loading

    with pytest.raises(SchemeError, match="format 'auto_awq' holds int_sym \\[4\\]"):
        check_before_loading(str(model_dir), parse_scheme("W3A16"), formats=["auto_awq"])
    check_before_loading(str(model_dir), parse_scheme("W4A16"), formats=["auto_awq", "auto_gptq"])


@pytest.mark.parametrize("flags, kw, needle", [
    (["--layer_config", '{"k_proj[":{bits:8}}'], dict(layer_config={"k_proj[": {"bits": 8}}),
     r"layer_config key='k_proj\[' is not allowed: a valid regular expression \(unterminated character set"),
    (["--layer_config", "{nomatch_xyz:{bits:8}}"], dict(layer_config={"nomatch_xyz": {"bits": 8}}),
     r"layer_config entry 'nomatch_xyz' matches no quantizable layer; closest layer names: .*Fix the name"),
    (["--ignore_layers", "nomatch_xyz"], dict(ignore_layers="nomatch_xyz"),
     r"ignore_layers entry 'nomatch_xyz' matches no quantizable layer"),
], ids=["bad_regex", "no_match", "ignore_no_match"])
def test_layer_patterns_before_loading(capsys, model_dir, tmp_path, no_weights, flags, kw, needle):
    rc, err = _cli(capsys, ["quantize", str(model_dir), *FAST, "--output_dir", str(tmp_path / "out"), *flags])
    assert rc == 1 and re.search(needle, err), err
    assert "strict=False" not in err  # the CLI has no such option
    with pytest.raises(LayerConfigError, match=needle):
        AutoRound(str(model_dir), iters=0, **kw)  # opt-RTN: the regular path, which loads the model
    _nothing_left(tmp_path / "out")


@pytest.mark.parametrize("name, needle", [
    ("missing.json", r"calibration file '.*missing.json' does not exist"),
    ("empty.txt", r"calibration file '.*empty.txt' is empty: it holds no documents; allowed: a .txt file"),
    ("empty.json", r"calibration file '.*empty.json' is empty"),
    ("keys.jsonl", r"keys.jsonl: an item with keys \['bar', 'foo'\] has no 'text' or 'messages' field; "
                   r"allowed: strings, or dicts with 'text'"),
    ("latin1.txt", r"calibration file '.*latin1.txt' is not UTF-8 text \(invalid continuation byte at byte 3\); "
                   r"save it as UTF-8"),
])
def test_dataset_file_before_loading(capsys, model_dir, data_files, tmp_path, no_weights, name, needle):
    data = str(data_files / name)
    rc, err = _cli(capsys, ["quantize", str(model_dir), *FAST, "--iters", "1", "--dataset", data,
                            "--output_dir", str(tmp_path / "out")])
    assert rc == 1 and re.search(needle, err), err
    with pytest.raises(DataError, match=needle):
        AutoRound(str(model_dir), iters=1, dataset=data)
    _nothing_left(tmp_path / "out")


def test_checks_pass_then_the_model_loads(capsys, model_dir, tmp_path, data_files):
    """The same checks let a good run through (a .txt calibration file, a matching layer_config)."""
    text = tmp_path / "calib.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    rc, err = _cli(capsys, ["quantize", str(model_dir), "--iters", "1", "--nsamples", "2", "--seqlen", "8",
                            "--dataset", str(text), "--layer_config", "{k_proj:{bits:8}}", "--format", "auto_gptq",
                            "--output_dir", str(tmp_path / "out")])
    assert rc == 0, err
    assert (tmp_path / "out" / "tiny-w4g128" / "model.safetensors").is_file()
