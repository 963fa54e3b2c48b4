"""The GPU proof: CUDA tests, kernel table, SignRound against auto-round 0.16.1, load + generate, in one budget.

Every section runs in its own child process (clean GPU memory, a hard time limit) and appends JSON lines to
<out>/<section>.jsonl; a section that runs out of its budget is stopped and keeps the rows it finished, and one that
would start with too little of the whole budget left is skipped with a note. The run ends with
<out>/gpu_proof.json (everything) and <out>/gpu_proof.md (the tables). `--dry` runs the same sections on the CPU
with tiny shapes under triton's interpreter (the test suite runs it). See benchmarks/README.md, "GPU proof".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from kernels import hbm_bandwidth
from report import markdown
from signround import block_losses

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SECTIONS = ("tests", "kernels", "signround", "generate")
BUDGETS = {"tests": 80, "kernels": 70, "signround": 250, "generate": 40}  # seconds on the GPU: 440 in all
DRY_BUDGETS = {"tests": 150, "kernels": 150, "signround": 400, "generate": 200}  # loose: a loaded CPU
MIN_START = 15  # seconds: a section is not started with less of the whole budget left
PARTIAL_KEYS = ("seconds", "seconds_per_block", "peak_vram_gib", "peak_rss_gib", "output_mse", "knobs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_proof", help="folder for the JSON, the Markdown and the children's logs")
    p.add_argument("--dry", action="store_true", help="CPU, tiny shapes, triton interpreter (the CI check)")
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default: 450, dry 900)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad or not args.sections:
        p.error(f"--sections {','.join(bad) or '(empty)'}: choose from {','.join(SECTIONS)}")
    args.budget = args.budget or (900.0 if args.dry else 450.0)
    return args


def child_env(dry: bool) -> dict[str, str]:
    """Environment of the children: offline hub; a dry run hides the GPUs and turns on triton's interpreter."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    if dry:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    return env


def run_child(cmd: list[str], env: dict[str, str], seconds: float, log: Path) -> tuple[str, str]:
    """Run `cmd` for at most `seconds`, output to `log`; returns (status, note): ok, failed or timeout."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", f"stopped at its {seconds:.0f} s limit; rows finished before are kept"
    if code == 0:
        return "ok", ""
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return "failed", f"exit {code}: " + " / ".join(line.strip()[:200] for line in tail)


def read_rows(path: Path) -> list[dict]:
    """The JSON lines a child appended to `path` (none when it wrote nothing)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def cuda_test_files() -> list[str]:
    """Test files (relative to the repository root) holding a `pytest.mark.cuda` test."""
    files = sorted(ROOT.glob("packages/*/tests/test_*.py")) + sorted(ROOT.glob("tests/test_*.py"))
    return [str(f.relative_to(ROOT)) for f in files if "pytest.mark.cuda" in f.read_text()]


def junit_counts(path: Path) -> dict:
    """passed/failed/errors/skipped counts, seconds and failed test ids from a pytest JUnit XML file."""
    suites = ET.parse(path).getroot().iter("testsuite")
    c = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0, "failed_tests": []}
    for suite in suites:
        for key, attr in (("tests", "tests"), ("failed", "failures"), ("errors", "errors"), ("skipped", "skipped")):
            c[key] += int(suite.get(attr, 0))
        c["seconds"] += float(suite.get("time", 0))
        c["failed_tests"] += [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                              if case.find("failure") is not None or case.find("error") is not None]
    c["passed"] = c["tests"] - c["failed"] - c["errors"] - c["skipped"]
    return c


def section_tests(out: Path, dry: bool, seconds: float) -> tuple[str, str, list[dict]]:
    """pytest -m cuda over every file with a cuda-marked test (all skip in a dry run: no GPU)."""
    xml = out / "tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
           *cuda_test_files()]
    status, note = run_child(cmd, child_env(dry), seconds, out / "tests.log")
    return status, note, [junit_counts(xml)] if xml.is_file() else []


def section_kernels(out: Path, dry: bool, seconds: float) -> tuple[str, str, list[dict]]:
    """The kernel table (benchmarks/gpu/kernels.py)."""
    rows = out / "kernels.jsonl"
    cmd = [sys.executable, str(HERE / "kernels.py"), "--out", str(rows)] + (["--dry"] if dry else [])
    status, note = run_child(cmd, child_env(dry), seconds, out / "kernels.log")
    return status, note, read_rows(rows)


def section_signround(out: Path, dry: bool, seconds: float) -> tuple[str, str, list[dict]]:
    """Ours, then the reference, each in its own process with half the time (signround.py)."""
    rows, statuses, notes, start = [], [], [], time.perf_counter()
    for i, system in enumerate(("ours", "reference")):
        jsonl, log = out / f"signround_{system}.jsonl", out / f"signround_{system}.log"
        limit = seconds / 2 if i == 0 else seconds - (time.perf_counter() - start)
        status, note = run_child([sys.executable, str(HERE / "signround.py"), "--system", system, "--out", str(jsonl)]
                                 + (["--dry"] if dry else []), child_env(dry), limit, log)
        statuses.append(status)
        notes += [f"{system}: {note}"] if note else []
        losses = block_losses(system, log.read_text(errors="replace"))
        row = (read_rows(jsonl) or [dict.fromkeys(PARTIAL_KEYS, None)])[0]  # cut short: the blocks its log shows
        rows.append(dict(row, system=system, status=status, block_losses=losses,
                         final_block_loss=losses[-1] if losses else None))
    status = next((s for s in ("failed", "timeout") if s in statuses), "ok")
    return status, "; ".join(notes), rows


def section_generate(out: Path, dry: bool, seconds: float) -> tuple[str, str, list[dict]]:
    """Our auto_round checkpoint loaded through the triton backend and generating (generate.py)."""
    rows = out / "generate.jsonl"
    cmd = [sys.executable, str(HERE / "generate.py"), "--out", str(rows)] + (["--dry"] if dry else [])
    status, note = run_child(cmd, child_env(dry), seconds, out / "generate.log")
    return status, note, read_rows(rows)


RUNNERS = {"tests": section_tests, "kernels": section_kernels, "signround": section_signround,
           "generate": section_generate}


def device_facts(dry: bool) -> dict:
    """The device name (with its HBM bandwidth when known) and the torch/triton versions."""
    import torch
    import triton

    name = "CPU (dry run)" if dry or not torch.cuda.is_available() else torch.cuda.get_device_name()
    bandwidth = hbm_bandwidth(name)
    return {"device": name, "hbm_tb_s": bandwidth / 1e12 if bandwidth else None, "torch": torch.__version__,
            "triton": triton.__version__}


def run(args: argparse.Namespace) -> dict:
    """Run the chosen sections inside the budget; returns the report (also written as JSON and Markdown)."""
    start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.jsonl"), *out.glob("*.log"), *out.glob("*.xml")]:  # an earlier run's
        old.unlink()
    report = {"dry": args.dry, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "budget_s": args.budget, **device_facts(args.dry), "sections": {}}
    budgets = DRY_BUDGETS if args.dry else BUDGETS
    for name in args.sections:
        left = args.budget - (time.perf_counter() - start)
        tick, limit = time.perf_counter(), min(budgets[name], left)
        if left < MIN_START:
            status, note, rows = "skipped", f"only {max(left, 0):.0f} s of the {args.budget:.0f} s budget left", []
        else:
            status, note, rows = RUNNERS[name](out, args.dry, limit)
        report["sections"][name] = {"status": status, "seconds": time.perf_counter() - tick,
                                    "budget_s": max(limit, 0), "note": note, "rows": rows}
        print(f"{name}: {status} in {time.perf_counter() - tick:.0f} s {note}", file=sys.stderr, flush=True)
    report["seconds"] = time.perf_counter() - start
    (out / "gpu_proof.json").write_text(json.dumps(report, indent=2))
    (out / "gpu_proof.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    """Run; exit 1 when a section failed (a timeout or a skip is reported, not an error)."""
    report = run(parse_args(argv))
    print(markdown(report))
    return 1 if any(s["status"] == "failed" for s in report["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
