"""`ar inspect` on the folder a multi-format `ar quantize` writes (one subfolder per format): it names the
subfolders and inspects each, instead of "holds no weight files"."""

from __future__ import annotations

import json

import pytest

from ar_cli.inspect_cmd import inspect_checkpoint
from ar_cli.main import main
from ar_core.errors import CheckpointError


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    """The output folder of `ar quantize --format auto_round,auto_gptq` (RTN, W4A16 g32)."""
    out = tmp_path_factory.mktemp("multi")
    assert main(["quantize", str(tiny_model_dir), "--scheme", "W4A16G32", "--recipe", "rtn", "--format",
                 "auto_round,auto_gptq", "--output_dir", str(out)]) == 0
    return out / "tiny-llama-w4g32"


def test_inspect_names_and_inspects_each_format_folder(capsys, run_dir):
    assert main(["inspect", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "holds 2 checkpoints, one per format: auto_gptq, auto_round" in out
    assert "=== auto_gptq ===" in out and "=== auto_round ===" in out
    assert "format       auto-round" in out and "format       gptq" in out
    assert main(["inspect", str(run_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(info["formats"]) == ["auto_gptq", "auto_round"]
    assert info["formats"]["auto_gptq"]["consumers"]["gptqmodel"]["ok"]
    assert info["formats"]["auto_round"]["quant_method"] == "auto-round"


def test_inspect_checkpoint_tells_which_subfolder_to_pass(run_dir):
    with pytest.raises(CheckpointError, match=r"one checkpoint per format in subfolders \(auto_gptq, auto_round\); "
                                              r"inspect one of them, e.g. `ar inspect .*auto_gptq`"):
        inspect_checkpoint(run_dir)


def test_an_empty_folder_still_says_it_holds_no_weights(capsys, tmp_path):
    (tmp_path / "notes").mkdir()
    assert main(["inspect", str(tmp_path)]) == 1
    assert "holds no weight files" in capsys.readouterr().err
