"""The GPU proof's pieces that its dry run does not reach: log and JUnit parsing, GPU models, time limits, skips."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks/gpu"))
import run as proof  # noqa: E402
from kernels import hbm_bandwidth  # noqa: E402
from report import markdown  # noqa: E402
from signround import block_losses  # noqa: E402


@pytest.mark.parametrize("name,tb_s", [("NVIDIA H200", 4.8), ("NVIDIA H100 80GB HBM3", 3.35),
                                       ("NVIDIA H100 PCIe", 2.0), ("NVIDIA A100-SXM4-80GB", None)])
def test_hbm_bandwidth_from_the_device_name(name, tb_s):
    got = hbm_bandwidth(name)
    assert (got is None) if tb_s is None else got == pytest.approx(tb_s * 1e12)


def test_block_losses_read_from_each_systems_log():
    ours = "block 1/3  loss 0.0012 -> 0.00041  2.0s\nblock 2/3  loss - -> -  1.0s\nblock 3/3  loss 1e-05 -> 3.2e-06  1s"
    ref = ("Quantizing model.layers.0: \x1b[38;20mquantized 7/7 layers in the block, loss iter 0: 1.122e-08 -> "
           "iter 187: 9.5e-09\x1b[0m\n")
    assert block_losses("ours", ours) == [0.00041, 3.2e-06]
    assert block_losses("reference", ref) == [9.5e-09]


def test_junit_counts(tmp_path):
    xml = tmp_path / "t.xml"
    xml.write_text('<testsuites><testsuite tests="4" failures="1" errors="0" skipped="2" time="1.5">'
                   '<testcase classname="a" name="ok"/><testcase classname="a" name="bad"><failure/></testcase>'
                   '<testcase classname="a" name="s1"><skipped/></testcase>'
                   '<testcase classname="a" name="s2"><skipped/></testcase></testsuite></testsuites>')
    c = proof.junit_counts(xml)
    assert (c["passed"], c["failed"], c["skipped"], c["failed_tests"]) == (1, 1, 2, ["a::bad"])


def test_a_child_past_its_limit_is_stopped(tmp_path):
    status, note = proof.run_child([sys.executable, "-c", "import time; time.sleep(60)"], proof.child_env(True), 1,
                                   tmp_path / "x.log")
    assert status == "timeout" and "1 s limit" in note
    status, note = proof.run_child([sys.executable, "-c", "raise SystemExit('boom')"], proof.child_env(True), 30,
                                   tmp_path / "y.log")
    assert status == "failed" and "boom" in note


def test_sections_without_budget_are_skipped_and_reported(tmp_path):
    report = proof.run(proof.parse_args(["--dry", "--budget", "1", "--out", str(tmp_path)]))
    assert [s["status"] for s in report["sections"].values()] == ["skipped"] * 4
    assert (tmp_path / "gpu_proof.json").is_file()
    assert "s of the 1 s budget left" in (tmp_path / "gpu_proof.md").read_text()


def test_markdown_of_a_signround_cut_short():
    row = dict(dict.fromkeys(proof.PARTIAL_KEYS), system="reference", status="timeout", block_losses=[1e-3],
               final_block_loss=1e-3)
    section = {"status": "timeout", "seconds": 250.0, "budget_s": 250.0, "note": "reference: stopped", "rows": [row]}
    report = {"dry": False, "device": "NVIDIA H200", "torch": "2", "triton": "3", "seconds": 400.0,
              "budget_s": 450.0, "started": "now", "sections": {"signround": section}}
    md = markdown(report)
    assert "# GPU proof: NVIDIA H200" in md and "| reference | timeout | – | – | – | – | 0.001 | – |" in md


def test_bad_section_name_is_refused(capsys):
    with pytest.raises(SystemExit):
        proof.parse_args(["--sections", "kernels,warp"])
    assert "--sections warp: choose from tests,kernels,signround,generate" in capsys.readouterr().err
