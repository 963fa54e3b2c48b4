"""Killing `ar quantize` with SIGKILL leaves a complete output directory or none, and rerunning the same command
resumes from the work directory: one kill at a random moment before the first checkpoint (import, model load,
calibration), then one per seed at a random moment after the rerun finished one more block (inside a block or while
checkpointing it); the last rerun resumes and writes files byte-identical to an uninterrupted run, leaving neither
the work directory nor a temporary sibling behind."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ar_export.testing import calibration_texts, save_tiny_model

SEEDS = (1, 2)
LAYERS = 5
BLOCK_DONE = re.compile(r"^block \d+/\d+", re.M)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny random Llama of LAYERS blocks with its tokenizer, and a calibration text file."""
    root = tmp_path_factory.mktemp("kill")
    save_tiny_model(root / "tiny", num_hidden_layers=LAYERS)
    (root / "calib.txt").write_text("\n\n".join(calibration_texts(8)), encoding="utf-8")
    return root


def _command(inputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "ar_cli", "quantize", str(inputs / "tiny"), "--iters", "2", "--nsamples", "2",
            "--seqlen", "16", "--batch_size", "2", "--dataset", str(inputs / "calib.txt"), "--seed", "0",
            "--output_dir", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _start(inputs: Path, out: Path, log: Path) -> subprocess.Popen:
    """Start the command with its output going into `log`."""
    with log.open("w") as sink:
        return subprocess.Popen(_command(inputs, out), env=_env(), stdout=sink, stderr=subprocess.STDOUT)


def _wait_for(proc: subprocess.Popen, done, limit: float = float("inf")) -> float:
    """Poll until `done()`, `limit` seconds passed or the process exits; the time it took."""
    start = time.monotonic()
    while proc.poll() is None and not done() and time.monotonic() - start < limit:
        time.sleep(0.01)
    return time.monotonic() - start


def _kill(proc: subprocess.Popen, after: float, stop, final: Path) -> None:
    """SIGKILL `proc` `after` seconds from now, or as soon as `stop()` (so that the kill lands where it should
    on a machine faster or slower than the reference run); no output may have appeared."""
    _wait_for(proc, stop, after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not final.exists(), "the run finished before the kill"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_resumes_byte_identical(inputs, tmp_path):
    reference, out = tmp_path / "ref", tmp_path / "run"
    state = out / "tiny-w4g128.work" / "run.json"
    proc = _start(inputs, reference, tmp_path / "ref.log")
    startup = _wait_for(proc, (reference / "tiny-w4g128.work" / "run.json").exists)
    per_block = _wait_for(proc, lambda: False) / LAYERS
    assert proc.returncode == 0, (tmp_path / "ref.log").read_text()
    expected = _files(reference / "tiny-w4g128")
    assert "model.safetensors" in expected and "config.json" in expected
    final = out / "tiny-w4g128"

    proc = _start(inputs, out, tmp_path / "kill0.log")  # before the first checkpoint
    _kill(proc, random.Random(0).uniform(0.2, 0.9) * startup, state.exists, final)
    for seed in SEEDS:  # within the block after the next finished one
        log = tmp_path / f"kill{seed}.log"
        proc = _start(inputs, out, log)
        _wait_for(proc, lambda: BLOCK_DONE.search(log.read_text()))
        _kill(proc, random.Random(seed).uniform(0.0, 1.2) * per_block,
              lambda: len(BLOCK_DONE.findall(log.read_text())) > 1, final)
        assert "resuming at block" in log.read_text() or seed == SEEDS[0]
    proc = _start(inputs, out, tmp_path / "last.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "last.log").read_text()
    assert "resuming at block" in (tmp_path / "last.log").read_text()
    assert _files(final) == expected
    assert sorted(p.name for p in out.iterdir()) == ["tiny-w4g128"]  # no work dir, no temporary sibling
