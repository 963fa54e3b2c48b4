"""`ar quantize --algorithm awq` (AWQ + RTN) and `--algorithm awq,auto_round` (AWQ + SignRound), in process."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from ar_cli.main import main
from ar_core.registry import FORMATS

NORM = "model.layers.0.post_attention_layernorm.weight"


@pytest.fixture(autouse=True, scope="module")
def writers():
    """The auto_round writer, registered directly when the entry points are not installed."""
    import ar_export

    if not FORMATS.is_available("auto_round"):
        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))


@pytest.mark.parametrize("algorithm, extra", [("awq", []), ("awq,auto_round", ["--iters", "2"])])
def test_awq_runs_block_wise_and_folds_scales(capsys, tiny_model_dir, tmp_path, algorithm, extra):
    common = ["--scheme", "W4A16G32", "--dataset", "pydoc", "--nsamples", "2", "--seqlen", "16", "--batch_size", "2"]
    assert main(["quantize", str(tiny_model_dir), "--algorithm", algorithm, *common, *extra,
                 "--output_dir", str(tmp_path)]) == 0
    assert "block 2/2" in capsys.readouterr().err  # loaded and run block by block, never model-free
    source = load_file(tiny_model_dir / "model.safetensors")
    saved = load_file(tmp_path / "tiny-llama-w4g32" / "model.safetensors")
    assert "model.layers.0.mlp.up_proj.qweight" in saved
    assert not saved[NORM].float().allclose(source[NORM].float())  # the AWQ scales live in the norm now


def test_awq_contradicting_flags_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "m", "--algorithm", "awq,auto_round", "--iters", "0"])
    assert exc.value.code == 2 and "tunes and contradicts --iters 0" in capsys.readouterr().err
