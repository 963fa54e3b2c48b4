"""A model folder's own Python code never runs unasked (issue 18 row 2): every command, with `yes` on stdin (which
would answer transformers' "run the custom code? [y/N]" prompt), refuses or goes on without it and leaves no
marker; with --trust_remote_code the code may run."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from ar_algos import AutoRound
from ar_cli.main import main
from ar_cli.testing import run_cli
from ar_export.testing import calibration_texts, save_tiny_model

NEEDLE = r"needs its own Python code to load \(config.json: configuration_x.XConfig.*no --trust_remote_code"


def _with_custom_code(src: Path, dst: Path) -> Path:
    """A copy of `src` whose config asks for its own code, which leaves the file RAN when imported."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(model_type="x_custom", auto_map={"AutoConfig": "configuration_x.XConfig",
                                                   "AutoModelForCausalLM": "modeling_x.XModel"})
    (dst / "config.json").write_text(json.dumps(config))
    (dst / "configuration_x.py").write_text(f"open({str(dst / 'RAN')!r}, 'w').close()\n"
                                            "raise ImportError('custom code ran')\n")
    return dst


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(16-bit model with custom code, W4G32 auto_round checkpoint with custom code, a text file)."""
    root = tmp_path_factory.mktemp("remote-code")
    plain = save_tiny_model(root / "tiny")
    AutoRound(str(plain), iters=0, nsamples=2, seqlen=8, scheme="W4G32", verbose=False).quantize_and_save(root / "q")
    text = root / "t.txt"
    text.write_text("\n\n".join(calibration_texts(2)))
    return _with_custom_code(plain, root / "custom"), _with_custom_code(root / "q", root / "qcustom"), text


@pytest.fixture
def yes_on_stdin(monkeypatch):
    """stdin answers "y" to every prompt, like `yes | ar ...`."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 1000))


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    rc, err = run_cli(capsys, argv)
    assert "[y/N]" not in err
    return rc, err


def _commands(model: Path, qmodel: Path, text: Path, out: Path) -> dict[str, list[str]]:
    fast = ["--nsamples", "2", "--seqlen", "8", "--output_dir", str(out)]
    evals = ["--text", str(text), "--windows", "1", "--seqlen", "16"]
    return {"quantize": ["quantize", str(model), "--iters", "0", *fast],
            "inspect": ["inspect", str(qmodel)],
            "eval_16bit": ["eval", str(model), *evals],
            "eval_quantized": ["eval", str(qmodel), *evals],
            "convert": ["convert", str(qmodel), str(out / "converted"), "--format", "auto_gptq"]}


@pytest.mark.parametrize("command", ["quantize", "inspect", "eval_16bit", "eval_quantized", "convert"])
def test_refused_without_the_flag(capsys, folders, tmp_path, yes_on_stdin, command):
    model, qmodel, text = folders
    rc, err = _cli(capsys, _commands(model, qmodel, text, tmp_path / "out")[command])
    assert rc == 1 and str(model if command in ("quantize", "eval_16bit") else qmodel) in err, err
    assert re.search(NEEDLE, err), err
    assert not (model / "RAN").exists() and not (qmodel / "RAN").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("flags", [["--model_free"], ["--disable_opt_rtn"]], ids=["model_free", "plain_rtn"])
def test_model_free_goes_on_without_the_code(capsys, folders, tmp_path, yes_on_stdin, flags):
    """Model-free planning reads tensor names and shapes instead of the model's own classes."""
    model, _, _ = folders
    rc, err = _cli(capsys, ["quantize", str(model), "--iters", "0", "--output_dir", str(tmp_path / "out"), *flags])
    assert rc == 0, err
    assert (tmp_path / "out" / "custom-w4g128" / "model.safetensors").is_file()
    assert not (model / "RAN").exists()


def test_list_reads_no_model(capsys, yes_on_stdin):
    for what in ("schemes", "formats", "recipes"):
        assert _cli(capsys, ["list", what])[0] == 0


def test_the_api_refuses_and_names_the_keyword(folders, yes_on_stdin):
    from ar_core.errors import CheckpointError
    from ar_eval import evaluate
    from ar_kernels import convert, explain, load

    model, qmodel, text = folders
    needle = "needs its own Python code to load.*trust_remote_code=False.*pass trust_remote_code=True"
    for call in (lambda: load(qmodel), lambda: explain(qmodel), lambda: convert(qmodel, qmodel.parent / "c"),
                 lambda: evaluate(model, text=str(text)), lambda: AutoRound(str(model), iters=0)):
        with pytest.raises(CheckpointError, match=needle):
            call()
    with pytest.raises(CheckpointError, match="trust_remote_code=None is not allowed: True or False"):
        load(qmodel, trust_remote_code=None)
    assert not (model / "RAN").exists() and not (qmodel / "RAN").exists()


@pytest.mark.parametrize("argv", [["inspect", "{q}", "--trust_remote_code"],
                                  ["eval", "{m}", "--text", "{t}", "--trust_remote_code"],
                                  ["convert", "{q}", "{o}", "--trust_remote_code"]],
                         ids=["inspect", "eval", "convert"])
def test_the_flag_lets_the_code_run(folders, tmp_path, yes_on_stdin, argv):
    model, qmodel, text = folders
    names = dict(q=str(qmodel), m=str(model), t=str(text), o=str(tmp_path / "c"))
    with pytest.raises(BaseException):  # noqa: B017 - whatever the custom code raises
        main([a.format(**names) for a in argv])
    ran = (qmodel if "{q}" in argv else model) / "RAN"
    assert ran.exists()
    ran.unlink()
