"""benchmarks/gpu/run.sh --dry: the GPU proof runs end to end on the CPU and writes its JSON and Markdown report."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["tests", "kernels", "signround", "generate"]


@pytest.fixture(scope="module")
def proof(tmp_path_factory) -> tuple[dict, str]:
    """(JSON report, Markdown) of one dry run."""
    if importlib.util.find_spec("auto_round") is None:
        pytest.skip("the dry run compares against auto-round (uv sync --group consumers)")
    out = tmp_path_factory.mktemp("gpu_proof")
    done = subprocess.run(["bash", str(ROOT / "benchmarks/gpu/run.sh"), "--dry", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "gpu_proof.json").read_text()), (out / "gpu_proof.md").read_text()


@pytest.mark.slow
def test_every_section_ran_and_kept_its_rows(proof):
    report, _ = proof
    assert report["dry"] is True and report["device"] == "CPU (dry run)"
    assert list(report["sections"]) == SECTIONS
    for name, section in report["sections"].items():
        assert section["status"] == "ok", (name, section["note"])
        assert section["rows"], name
    tests = report["sections"]["tests"]["rows"][0]
    assert tests["failed"] == tests["errors"] == 0 and tests["skipped"] > 200  # the cuda tests skip on the CPU


@pytest.mark.slow
def test_sections_measure_what_the_gpu_run_reports(proof):
    report, _ = proof
    rows = report["sections"]["kernels"]["rows"]
    assert {r["bits"] for r in rows} == {2, 3, 4, 8} and {r["tokens"] for r in rows} == {1, 16}
    assert {r["backend"] for r in rows if r["bits"] != 3} == {"triton"}
    assert all(r["us"] > 0 and r["bf16_us"] > 0 and r["gb_s"] > 0 and r["roofline"] is None for r in rows)
    signround = {r["system"]: r for r in report["sections"]["signround"]["rows"]}
    assert set(signround) == {"ours", "reference"}
    for r in signround.values():
        assert len(r["block_losses"]) == r["knobs"]["blocks"] and r["final_block_loss"] == r["block_losses"][-1]
        assert r["seconds_per_block"] > 0 and r["output_mse"] > 0 and r["peak_vram_gib"] is None
    generate = report["sections"]["generate"]["rows"][0]
    assert generate["backends"] == ["triton"] and generate["same_tokens"] and generate["logits_rel_err"] < 1e-4


@pytest.mark.slow
def test_markdown_has_one_table_per_section(proof):
    _, md = proof
    assert md.startswith("# GPU proof: CPU (dry run)")
    for title in ("## CUDA tests", "## Kernel table", "## SignRound, ours vs auto-round 0.16.1",
                  "## auto_round checkpoint: load + generate"):
        assert title in md
    assert sum(line.startswith("|---|") for line in md.splitlines()) == 4 and "| W4G32 | 128×256 | 1 | triton |" in md
