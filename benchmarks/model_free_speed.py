"""Model-free RTN of a real checkpoint: ours against the reference auto-round's model-free mode and a plain read.

    .venv/bin/python benchmarks/model_free_speed.py --model qwen2.5-coder-0.5b --rounds 2
    .venv/bin/python benchmarks/model_free_speed.py --kinds read ours --rounds 3 --cold

Each measurement runs in a fresh Python process with one thread (OMP/MKL threads and torch threads = 1), so every run
pays its own imports, as a user's command would: "read" reads every safetensors file of the checkpoint into one
reused buffer, "ours" is `ar_algos.model_free.quantize_model_free(..., workers=1)`, "reference" is auto-round's
`AutoRound(path, iters=0, model_free=True, disable_opt_rtn=True).quantize_and_save(out, format="auto_round")`.
The kinds alternate (read, ours, reference, read, ours, ...) so that load changes hit all of them alike.

The page cache: by default it stays warm (the files are read once before the first round, so every run, the read's
too, finds them in memory); `--cold` evicts the checkpoint's files from it (posix_fadvise DONTNEED) before every
run, so every run reads from the disk. Prints per run the wall seconds of the whole process and of the call, the
CPU seconds (user + system, the process and its children) of the call, the load average before it, and the ratios
of medians. On a shared machine the CPU seconds are the steadier measure: wall time there mostly counts waiting for
a core.
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

CPU_CLOCK = """
import resource, sys, time
def cpu():
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, who))
"""
CHILD = {
    "read": CPU_CLOCK + """
from pathlib import Path
t, c = time.perf_counter(), cpu()
buf = bytearray(64 * 2**20)
view = memoryview(buf)
for p in sorted(Path(sys.argv[1]).glob("*.safetensors")):
    with open(p, "rb", buffering=0) as f:
        while f.readinto(view):
            pass
print(f"CALL {time.perf_counter() - t:.3f} {cpu() - c:.3f}")
""",
    "ours": CPU_CLOCK + """
import torch
torch.set_num_threads(1)
from ar_algos.model_free import quantize_model_free
t, c = time.perf_counter(), cpu()
quantize_model_free(sys.argv[1], sys.argv[2], scheme=sys.argv[3], workers=1, overwrite=True)
print(f"CALL {time.perf_counter() - t:.3f} {cpu() - c:.3f}")
""",
    "reference": CPU_CLOCK + """
import torch
torch.set_num_threads(1)
from auto_round import AutoRound
t, c = time.perf_counter(), cpu()
AutoRound(sys.argv[1], scheme=sys.argv[3], iters=0, model_free=True, disable_opt_rtn=True).quantize_and_save(
    sys.argv[2], format="auto_round")
print(f"CALL {time.perf_counter() - t:.3f} {cpu() - c:.3f}")
""",
}


def evict(src: Path) -> None:
    """Drop the checkpoint's safetensors files from the page cache (the next read comes from the disk)."""
    for p in src.glob("*.safetensors"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _run(kind: str, src: str, out: str, scheme: str) -> tuple[float, float, float]:
    """(process wall, call wall, call CPU) seconds of one fresh child process."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "AR_MODEL_FREE_SHARD_PARALLELISM": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD[kind], src, out, scheme], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    call, cpu = next(line.split()[1:3] for line in proc.stdout.splitlines() if line.startswith("CALL"))
    return wall, float(call), float(cpu)


def main() -> None:
    """Parse the flags, resolve the model directory, and time the kinds in alternation."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="a local directory or an embedded model name")
    ap.add_argument("--out", default="/tmp/ar-bench/model-free-speed")
    ap.add_argument("--scheme", default="W4A16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kinds", nargs="+", default=["read", "ours", "reference"], choices=list(CHILD))
    ap.add_argument("--cold", action="store_true", help="evict the checkpoint from the page cache before each run")
    args = ap.parse_args()
    src = Path(args.model)
    if not src.is_dir():
        from ar_algos.models import embedded_model_path

        src = embedded_model_path(args.model)
    size = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    print(f"model {src}  {size / 1e9:.2f} GB of safetensors  scheme {args.scheme}  cpus {os.cpu_count()}  "
          f"page cache {'cold' if args.cold else 'warm'}")
    if not args.cold:
        _run("read", str(src), f"{args.out}/read", args.scheme)
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in args.kinds}
    for r in range(args.rounds):
        for kind in args.kinds:
            if args.cold:
                evict(src)
            load = os.getloadavg()[0]
            wall, call, cpu = _run(kind, str(src), f"{args.out}/{kind}", args.scheme)
            times[kind].append((wall, call, cpu))
            print(f"round {r} {kind:9s} process {wall:7.2f} s  in call {call:7.2f} s  call CPU {cpu:7.2f} s  "
                  f"({size / 1e6 / call:6.0f} MB/s)  load before {load:.1f}", flush=True)
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in times.items()}
    for kind, (wall, call, cpu) in med.items():
        print(f"median {kind:9s} process {wall:7.2f} s  in call {call:7.2f} s  call CPU {cpu:7.2f} s")
    if "ours" in med and "reference" in med:
        print("reference / ours: " + ", ".join(f"{what} {med['reference'][i] / med['ours'][i]:.2f}x" for i, what in
                                                enumerate(("process", "in call", "call CPU"))))
    if "ours" in med and "read" in med:
        print("ours / read: " + ", ".join(f"{what} {med['ours'][i] / med['read'][i]:.1f}x" for i, what in
                                          ((1, "in call"), (2, "call CPU"))))
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
