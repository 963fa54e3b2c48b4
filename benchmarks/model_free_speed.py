"""Model-free RTN of a real checkpoint: ours against the reference auto-round's model-free mode and a plain read.

    .venv/bin/python benchmarks/model_free_speed.py --model qwen2.5-coder-0.5b --rounds 2

Each measurement runs in a fresh Python process with one thread (OMP/MKL threads and torch threads = 1), so every run
pays its own imports, as a user's command would: "read" reads every safetensors file of the checkpoint into one
reused buffer (the page cache is warm after the first round, as it is for the quantizers), "ours" is
`ar_algos.model_free.quantize_model_free(..., workers=1)`, "reference" is auto-round's
`AutoRound(path, iters=0, model_free=True, disable_opt_rtn=True).quantize_and_save(out, format="auto_round")`.
The kinds alternate (read, ours, reference, read, ours, ...) so that load changes hit both quantizers alike. Prints
wall seconds per run (whole process and inside the call), the load average before each, and the ratios of medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = {
    "read": """
import sys, time
from pathlib import Path
t = time.perf_counter()
buf = bytearray(64 * 2**20)
view = memoryview(buf)
total = 0
for p in sorted(Path(sys.argv[1]).glob("*.safetensors")):
    with open(p, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
print(f"CALL {time.perf_counter() - t:.3f} BYTES {total}")
""",
    "ours": """
import sys, time
import torch
torch.set_num_threads(1)
from ar_algos.model_free import quantize_model_free
t = time.perf_counter()
quantize_model_free(sys.argv[1], sys.argv[2], scheme=sys.argv[3], workers=1, overwrite=True)
print(f"CALL {time.perf_counter() - t:.3f}")
""",
    "reference": """
import sys, time
import torch
torch.set_num_threads(1)
from auto_round import AutoRound
t = time.perf_counter()
AutoRound(sys.argv[1], scheme=sys.argv[3], iters=0, model_free=True, disable_opt_rtn=True).quantize_and_save(
    sys.argv[2], format="auto_round")
print(f"CALL {time.perf_counter() - t:.3f}")
""",
}


def _run(kind: str, src: str, out: str, scheme: str) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "AR_MODEL_FREE_SHARD_PARALLELISM": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD[kind], src, out, scheme], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    call = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("CALL")))
    return wall, call


def main() -> None:
    """Parse the flags, resolve the model directory, and time the three kinds in alternation."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="a local directory or an embedded model name")
    ap.add_argument("--out", default="/tmp/ar-bench/model-free-speed")
    ap.add_argument("--scheme", default="W4A16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kinds", nargs="+", default=["read", "ours", "reference"], choices=list(CHILD))
    args = ap.parse_args()
    src = Path(args.model)
    if not src.is_dir():
        from ar_algos.models import embedded_model_path

        src = embedded_model_path(args.model)
    size = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    print(f"model {src}  {size / 1e9:.2f} GB of safetensors  scheme {args.scheme}  cpus {os.cpu_count()}")
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in args.kinds}
    for r in range(args.rounds):
        for kind in args.kinds:
            load = os.getloadavg()[0]
            wall, call = _run(kind, str(src), f"{args.out}/{kind}", args.scheme)
            times[kind].append((wall, call))
            print(f"round {r} {kind:9s} process {wall:7.1f} s  in call {call:7.1f} s  "
                  f"({size / 1e6 / call:6.0f} MB/s)  load before {load:.1f}", flush=True)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    for kind, (wall, call) in med.items():
        print(f"median {kind:9s} process {wall:7.1f} s  in call {call:7.1f} s")
    if "ours" in med and "reference" in med:
        print(f"reference / ours: process {med['reference'][0] / med['ours'][0]:.2f}x, "
              f"in call {med['reference'][1] / med['ours'][1]:.2f}x")
    if "ours" in med and "read" in med:
        print(f"ours / read (in call): {med['ours'][1] / med['read'][1]:.1f}x")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
