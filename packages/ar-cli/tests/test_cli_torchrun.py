"""`torchrun -m ar_cli quantize`: 2 gloo ranks quantize together (data-parallel SignRound), rank 0 alone prints
and writes. (Equality with one process is tested in ar-algos' test_algos_distributed.py.)"""

import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

ARGS = ["--scheme", "W4A16G32", "--iters", "2", "--nsamples", "4", "--seqlen", "16", "--batch_size", "4",
        "--dataset", "pydoc", "--disable_model_free"]


@pytest.mark.slow
def test_torchrun_quantize_writes_once(tiny_model_dir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "ar_cli",
           "quantize", str(tiny_model_dir), *ARGS, "--output_dir", str(tmp_path / "two")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("saved ") == 1, done.stdout
    [out] = (tmp_path / "two").iterdir()  # and no <name>.work left: rank 0 removed it after saving
    weights = load_file(out / "model.safetensors")
    assert any(k.endswith("qweight") for k in weights)
