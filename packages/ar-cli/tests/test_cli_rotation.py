"""`ar quantize --rotation`: the rotation reaches AutoRound and the auto_round config; wrong combinations fail."""

from __future__ import annotations

import json

import pytest

from ar_cli.inspect_cmd import inspect_checkpoint
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
    ckpt = tmp_path / "tiny-llama-w4g32"
    assert inspect_checkpoint(ckpt)["consumers"]["transformers"]["ok"]
    layers = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]  # an earlier ar's online R4 record
    config = json.loads((ckpt / "config.json").read_text())
    config["quantization_config"]["rotation_config"] = {"mode": "r4", "random": False, "seed": 0,
                                                       "online": [{"layers": layers, "size": 64, "random": False,
                                                                   "seed": 2}]}
    (ckpt / "config.json").write_text(json.dumps(config))
    consumers = inspect_checkpoint(ckpt)["consumers"]
    for name in ("transformers", "vllm"):
        assert not consumers[name]["ok"] and "2 layers need online Hadamard rotations" in consumers[name]["reason"]


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
