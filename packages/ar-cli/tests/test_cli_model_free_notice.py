"""A local directory routed to model-free mode says so once; the run summary prints both bits-per-weight figures."""

import filecmp

import pytest

from ar_cli.main import main

COMMON = ["--algorithm", "rtn", "--scheme", "W4A16G32", "--output_dir"]


def test_model_free_routing_is_said_once(capsys, tiny_model_dir, tmp_path):
    assert main(["quantize", str(tiny_model_dir), *COMMON, str(tmp_path / "free")]) == 0
    out = capsys.readouterr().out
    assert out.count("model-free mode:") == 1 and "without loading the model" in out
    assert "(16-bit tensors included)" in out and "in the quantized layers alone" in out
    assert main(["quantize", str(tiny_model_dir), "--disable_model_free", *COMMON, str(tmp_path / "reg")]) == 0
    out = capsys.readouterr().out
    assert "model-free" not in out and "in the quantized layers alone" in out


@pytest.mark.slow
def test_model_free_workers_flag_gives_the_same_bytes(tiny_model_dir, tmp_path):
    for workers in ("1", "2"):
        assert main(["quantize", str(tiny_model_dir), "--model_free", "--model_free_workers", workers, *COMMON,
                     str(tmp_path / workers)]) == 0
    one, two = (next((tmp_path / w).iterdir()) for w in ("1", "2"))
    assert filecmp.cmp(one / "model.safetensors", two / "model.safetensors", shallow=False)
