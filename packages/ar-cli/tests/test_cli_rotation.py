"""`ar quantize --rotation`: the rotation reaches AutoRound and the auto_round config; wrong combinations fail."""

from __future__ import annotations

import json

import pytest

from ar_cli.main import main
from ar_core.registry import FORMATS


@pytest.fixture(autouse=True, scope="module")
def writers():
    """The auto_round writer, registered directly when the entry points are not installed."""
    import ar_export

    if not FORMATS.is_available("auto_round"):
        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))


def test_foldable_rotation_leaves_no_rotation_config_for_auto_round(tiny_model_dir, tmp_path):
    assert main(["quantize", str(tiny_model_dir), "--scheme", "W4A16G32", "--recipe", "rtn", "--rotation", "r1",
                 "--output_dir", str(tmp_path)]) == 0
    qc = json.loads((tmp_path / "tiny-llama-w4g32" / "config.json").read_text())["quantization_config"]
    assert "rotation_config" not in qc  # auto-round reads that key as its own Hadamard schema


@pytest.mark.parametrize("flags, want, message", [(["--model_free"], 2, "--rotation has no effect with --model_free"),
                                                  (["--format", "auto_gptq"], 1, "foldable rotation"),
                                                  ([], 1, "rotation='block' is not allowed")])
def test_rotation_flag_misuse_is_an_error(capsys, monkeypatch, tiny_model_dir, tmp_path, flags, want, message):
    import ar_algos

    monkeypatch.setattr(ar_algos, "AutoRound", None)  # refused before the model loads
    try:
        code = main(["quantize", str(tiny_model_dir), "--recipe", "rtn", "--rotation", "random", *flags,
                     "--output_dir", str(tmp_path)])
    except SystemExit as exc:  # usage errors exit from argparse, run-time ArErrors return the code
        code = exc.code
    assert code == want and message in capsys.readouterr().err
