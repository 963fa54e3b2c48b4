"""Bad input and failures (issue 11): one test per kind of bad input, through the CLI (`ar_cli.main`, in-process)
and the API (`AutoRound`, `ar_kernels.load`). Each asserts the message (names the input, the value, what is allowed
or what to do), the exit code, and that no output directory (not even a hidden temporary one) is left behind."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from ar_algos import AutoRound
from ar_cli.testing import run_cli as _cli
from ar_core.errors import ArError, CheckpointError, DataError, LayerConfigError, PluginError
from ar_export.testing import calibration_texts, save_tiny_model

FAST = ["--iters", "0", "--nsamples", "2", "--seqlen", "8"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny random Llama (hidden 256, 2 layers) with its tokenizer."""
    return save_tiny_model(tmp_path_factory.mktemp("errors") / "tiny")


def _broken(model_dir: Path, tmp_path: Path, how: str) -> Path:
    """A copy of `model_dir` with one defect: no config / tokenizer / weights, truncated or corrupt weights."""
    path = tmp_path / f"model-{how}"
    shutil.copytree(model_dir, path)
    weights = path / "model.safetensors"
    if how == "no_config":
        (path / "config.json").unlink()
    elif how == "no_tokenizer":
        for f in path.glob("tokenizer*"):
            f.unlink()
    elif how == "no_weights":
        weights.unlink()
    elif how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[:len(data) // 2])
    elif how == "corrupt":
        weights.write_bytes(b"\xff" * 64)
    return path




def _nothing_left(root: Path, keep: tuple[str, ...] = ()) -> None:
    """`root` holds no output: no directory at all, or only the names in `keep`."""
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert left == sorted(keep), left


def _quantize(capsys, model, out: Path, *flags: str) -> tuple[int, str]:
    return _cli(capsys, ["quantize", str(model), *FAST, "--output_dir", str(out), *flags])


def _api(model, out: Path, fmt: str = "auto_round", **kw):
    args = dict(iters=0, nsamples=2, seqlen=8, verbose=False)
    return AutoRound(str(model), **{**args, **kw}).quantize_and_save(out, format=fmt)


# --- scheme, format, group_size, bits ------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, code, needle", [
    (["--scheme", "W9Z"], 2, "scheme='W9Z' is not allowed: a preset \\(.*W4A16"),
    (["--format", "foo"], 2, "--format 'foo' is not a known format; one of .*auto_round"),
    (["--scheme", "MXFP4", "--group_size", "24"], 2, "group_size=24 is not allowed: data_type 'mx_fp' needs 32"),
    (["--bits", "5", "--format", "auto_gptq"], 1, "5-bit.*format 'auto_gptq' holds int_sym \\[2, 3, 4, 8\\]"),
    (["--data_type", "mx_fp", "--bits", "3"], 2, "bits=3 is not allowed: data_type 'mx_fp' holds bits \\[4, 6, 8\\]"),
    (["--format", "auto_round,fake,auto_round"], 1, "format='auto_round,fake,auto_round' is not allowed: each format "
                                                    "once"),
])
def test_cli_scheme_format_group_size_bits(capsys, model_dir, tmp_path, flags, code, needle):
    rc, err = _quantize(capsys, model_dir, tmp_path / "out", *flags)
    assert rc == code and re.search(needle, err), err
    _nothing_left(tmp_path / "out")


@pytest.mark.parametrize("kw, fmt, error, needle", [
    (dict(scheme="W9Z"), "auto_round", ArError, "scheme='W9Z' is not allowed: a preset \\(.*W4A16"),
    ({}, "foo", PluginError, "'foo'"),
    (dict(scheme="MXFP4", group_size=24), "auto_round", ArError, "group_size=24 is not allowed"),
    (dict(bits=5), "auto_gptq", ArError, "format 'auto_gptq' holds int_sym \\[2, 3, 4, 8\\]"),
    (dict(data_type="mx_fp", bits=3), "auto_round", ArError, "bits=3 is not allowed: data_type 'mx_fp' holds"),
    ({}, "fake,fake", ArError, "each format once"),
])
def test_api_scheme_format_group_size_bits(model_dir, tmp_path, kw, fmt, error, needle):
    with pytest.raises(error, match=needle):
        _api(model_dir, tmp_path / "out" / "q", fmt, **kw)
    _nothing_left(tmp_path / "out")


@pytest.fixture(scope="module")
def narrow_dir(tmp_path_factory):
    """A tiny Llama whose widths (48, 80) are no multiple of 32: no layer can hold an MX group of 32."""
    return save_tiny_model(tmp_path_factory.mktemp("errors-narrow") / "narrow", hidden_size=48, intermediate_size=80)


@pytest.mark.parametrize("model, flags, kw, needle", [
    ("narrow_dir", ["--scheme", "MXFP4"], dict(scheme="MXFP4"),
     r"default scheme \(mx_fp W4A4 group_size=32\) fits none of the 14 layer\(s\).*in_features=48 is not "
     r"a multiple of mx_fp group_size=32.*Choose a group_size or data type"),
    ("model_dir", ["--group_size", "4096"], dict(group_size=4096),
     r"default scheme \(int W4A16 group_size=4096\) fits none of the .* layer\(s\).*group_size=4096 > "
     r"in_features=.*Choose a group_size"),
], ids=["no_layer_can_use", "wider_than_every_layer"])
def test_cli_and_api_group_size_that_fits_no_layer(capsys, request, tmp_path, model, flags, kw, needle):
    """A group_size no layer can use is refused, not silently turned into one group per channel."""
    path = request.getfixturevalue(model)
    rc, err = _quantize(capsys, path, tmp_path / "out", *flags)
    assert rc == 1 and re.search(needle, err), err
    with pytest.raises(LayerConfigError, match=needle):
        _api(path, tmp_path / "out" / "q", **kw)
    _nothing_left(tmp_path / "out")


# --- layer_config and ignore_layers --------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, code, needle", [
    (["--layer_config", "{k_proj:{bits:8}"], 2, "--layer_config: .* is not JSON"),
    (["--layer_config", "{nomatch_xyz:{bits:8}}"], 1, "layer_config entry 'nomatch_xyz' matches no quantizable "
                                                      "layer; closest layer names: .*Fix the name"),
    (["--layer_config", "{k_proj:{bits:77}}"], 1, "bits"),
    (["--ignore_layers", "nomatch_xyz"], 1, "ignore_layers entry 'nomatch_xyz' matches no quantizable layer"),
])
def test_cli_layer_config_and_ignore_layers(capsys, model_dir, tmp_path, flags, code, needle):
    rc, err = _quantize(capsys, model_dir, tmp_path / "out", *flags)
    assert rc == code and re.search(needle, err), err
    _nothing_left(tmp_path / "out")


@pytest.mark.parametrize("kw, needle", [
    (dict(layer_config="{k_proj:{bits:8}"), "layer_config"),
    (dict(layer_config={"nomatch_xyz": {"bits": 8}}), "'nomatch_xyz' matches no quantizable layer"),
    (dict(ignore_layers=["nomatch_xyz"]), "ignore_layers entry 'nomatch_xyz' matches no quantizable layer"),
])
def test_api_layer_config_and_ignore_layers(model_dir, tmp_path, kw, needle):
    with pytest.raises(LayerConfigError, match=needle):
        _api(model_dir, tmp_path / "out" / "q", **kw)
    _nothing_left(tmp_path / "out")


# --- calibration data ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset, needle", [
    ("nosuchdata", "calibration dataset 'nosuchdata'; known names: .*wiki.*or give a local"),
    ("wiki:num=abc", "num='abc' is not allowed: a whole number"),
    ("wiki:split", "split"),
    ("/no/such/file.txt", "calibration file '/no/such/file.txt' does not exist"),
])
def test_cli_and_api_bad_dataset(capsys, model_dir, tmp_path, dataset, needle):
    rc, err = _quantize(capsys, model_dir, tmp_path / "out", "--iters", "1", "--dataset", dataset)
    assert rc == 1 and re.search(needle, err), err
    with pytest.raises(DataError, match=needle):
        _api(model_dir, tmp_path / "out" / "q", iters=1, dataset=dataset)
    _nothing_left(tmp_path / "out")


# --- the model directory -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how, needle", [
    ("no_config", "has no config.json"),
    ("no_tokenizer", "has no tokenizer \\(none of tokenizer.json"),
    ("no_weights", "no file named model.safetensors"),
    ("truncated", "model.safetensors' is truncated or corrupt .*re-download or re-save"),
    ("corrupt", "model.safetensors' is truncated or corrupt"),
])
@pytest.mark.parametrize("plain_rtn", [False, True], ids=["opt_rtn", "model_free"])
def test_cli_and_api_broken_model_dir(capsys, model_dir, tmp_path, how, needle, plain_rtn):
    if how == "no_tokenizer" and plain_rtn:
        pytest.skip("model-free RTN reads only config.json and the weights: it needs no tokenizer")
    broken = _broken(model_dir, tmp_path, how)
    flags = ["--disable_opt_rtn"] if plain_rtn else []
    rc, err = _quantize(capsys, broken, tmp_path / "out", *flags)
    assert rc == 1 and str(broken) in err and re.search(needle, err), err
    with pytest.raises(CheckpointError, match=needle):
        _api(broken, tmp_path / "out" / "q", disable_opt_rtn=plain_rtn)
    _nothing_left(tmp_path / "out")


def test_cli_and_api_hub_name_while_offline(capsys, tmp_path):
    needle = "model 'someorg/somemodel' is not a local directory and the Hugging Face hub is offline.*smollm2-135m"
    rc, err = _quantize(capsys, "someorg/somemodel", tmp_path / "out")
    assert rc == 1 and re.search(needle, err), err
    with pytest.raises(CheckpointError, match=needle):
        _api("someorg/somemodel", tmp_path / "out" / "q")
    _nothing_left(tmp_path / "out")


# --- the output directory ------------------------------------------------------------------------------------------

def test_cli_and_api_refuse_an_existing_output_dir(capsys, model_dir, tmp_path):
    existing = tmp_path / "out" / "tiny-w4g128"
    existing.mkdir(parents=True)
    (existing / "keep.txt").write_text("mine")
    rc, err = _quantize(capsys, model_dir, tmp_path / "out")
    assert rc == 1 and f"output_dir={str(existing)!r}" in err and "--overwrite" in err, err
    with pytest.raises(CheckpointError, match="does not exist yet.*overwrite=True"):
        _api(model_dir, existing)
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]
    _nothing_left(tmp_path / "out", keep=("tiny-w4g128",))
    rc, _ = _quantize(capsys, model_dir, tmp_path / "out", "--overwrite")
    # --overwrite replaces what ar writes; a user's own file in the folder survives (issue 18)
    assert rc == 0 and (existing / "model.safetensors").is_file() and (existing / "keep.txt").read_text() == "mine"
    _nothing_left(tmp_path / "out", keep=("tiny-w4g128",))


def test_cli_and_api_output_under_a_file(capsys, model_dir, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    rc, err = _quantize(capsys, model_dir, blocker / "sub")
    assert rc == 1 and f"{str(blocker)!r} is a file" in err, err
    with pytest.raises(CheckpointError, match="is a file"):
        _api(model_dir, blocker / "q")
    assert blocker.read_text() == "x"
    _nothing_left(tmp_path, keep=("afile",))


def test_cli_and_api_output_not_writable(capsys, model_dir, tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != tmp_path / "out" and real(p, mode, **kw))
    (tmp_path / "out").mkdir()
    rc, err = _quantize(capsys, model_dir, tmp_path / "out")
    assert rc == 1 and "is not writable" in err and str(tmp_path / "out") in err, err
    with pytest.raises(CheckpointError, match="directory .* is not writable"):
        _api(model_dir, tmp_path / "out" / "q")
    _nothing_left(tmp_path / "out")


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "ran out of disk space"),
                                          (errno.EACCES, "was refused \\(not writable\\)")])
def test_cli_and_api_write_failure_leaves_no_output(capsys, model_dir, tmp_path, monkeypatch, code, needle):
    import safetensors.torch

    def failing(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    rc, err = _quantize(capsys, model_dir, tmp_path / "out")
    assert rc == 1 and re.search(needle, err) and "tiny-w4g128" in err and "nothing was left" in err, err
    # the work directory stays so that the same command resumes once there is room
    _nothing_left(tmp_path / "out", keep=("tiny-w4g128.work",))
    with pytest.raises(CheckpointError, match=needle):
        _api(model_dir, tmp_path / "api" / "q", "auto_round,fake")
    _nothing_left(tmp_path / "api", keep=("q.work",))
    monkeypatch.undo()
    assert _quantize(capsys, model_dir, tmp_path / "out")[0] == 0
    _nothing_left(tmp_path / "out", keep=("tiny-w4g128",))


# --- trust_remote_code ---------------------------------------------------------------------------------------------

@pytest.fixture
def custom_code_dir(model_dir, tmp_path):
    """A model directory whose config asks for its own Python code (which records that it ran)."""
    path = tmp_path / "custom"
    shutil.copytree(model_dir, path)
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="x_custom", auto_map={"AutoConfig": "configuration_x.XConfig",
                                                   "AutoModelForCausalLM": "modeling_x.XModel"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "configuration_x.py").write_text(f"open({str(path / 'RAN')!r}, 'w').close()\n"
                                             "raise ImportError('custom code ran')\n")
    return path


def test_trust_remote_code_is_off_unless_asked(capsys, custom_code_dir, tmp_path):
    rc, err = _quantize(capsys, custom_code_dir, tmp_path / "out")
    assert rc == 1 and "trust_remote_code" in err, err
    with pytest.raises(CheckpointError, match="trust_remote_code"):
        _api(custom_code_dir, tmp_path / "out" / "q")
    assert not (custom_code_dir / "RAN").exists()
    _nothing_left(tmp_path / "out")
    with pytest.raises(BaseException):  # noqa: B017 - whatever the custom code raises
        _api(custom_code_dir, tmp_path / "out" / "q", trust_remote_code=True)
    assert (custom_code_dir / "RAN").exists()
    (custom_code_dir / "RAN").unlink()
    with pytest.raises(BaseException):  # noqa: B017
        _quantize(capsys, custom_code_dir, tmp_path / "out", "--trust_remote_code")
    assert (custom_code_dir / "RAN").exists()
    with pytest.raises(ArError, match="trust_remote_code='yes' is not allowed"):
        AutoRound(str(custom_code_dir), trust_remote_code="yes")


# --- loading a quantized checkpoint (ar_kernels.load) --------------------------------------------------------------

@pytest.fixture(scope="module")
def quantized_dir(model_dir, tmp_path_factory):
    """A W4G32 auto_round checkpoint of the tiny model."""
    out = tmp_path_factory.mktemp("errors-q") / "q"
    _api(model_dir, out, scheme="W4G32")
    return out


@pytest.mark.parametrize("how, needle", [
    ("bits", "layer 'model\\.layers\\.0\\..*qweight has shape"),
    ("truncated", "model.safetensors' is truncated or corrupt"),
    ("no_config", "config.json"),
])
def test_load_inconsistent_or_broken_checkpoint(capsys, quantized_dir, tmp_path, how, needle):
    from ar_kernels import load

    path = tmp_path / "ckpt"
    shutil.copytree(quantized_dir, path)
    if how == "bits":
        config = json.loads((path / "config.json").read_text())
        config["quantization_config"]["bits"] = 8
        (path / "config.json").write_text(json.dumps(config))
    elif how == "truncated":
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[:-100])
    else:
        (path / "config.json").unlink()
    with pytest.raises(ArError, match=needle):
        load(path)
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(calibration_texts(2)))
    rc, err = _cli(capsys, ["eval", str(path), "--text", str(text), "--windows", "1", "--seqlen", "16"])
    assert rc == 1 and re.search(needle, err), err
