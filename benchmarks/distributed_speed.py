"""Data-parallel SignRound under torchrun: wall time and peak memory per rank at 1 and 2 gloo ranks on this CPU, and
the projected scaling of an 8B / 70B model on GPUs.

    .venv/bin/python benchmarks/distributed_speed.py --layers 4 --rounds 2            # measure, then project
    .venv/bin/python benchmarks/distributed_speed.py --project_only                   # the projection alone

Measurement: the embedded SmolLM2-135M cut to its first `--layers` decoder blocks (saved once as a model directory,
so every run tunes the same blocks; the per-block cost is what scales), quantized by exactly the command a user
types, `torchrun --standalone --nproc-per-node N -m ar_cli quantize DIR --scheme W4A16 --group_size 32 --iters ...`,
with one thread per rank (OMP_NUM_THREADS=1). The world sizes alternate (1, 2, 1, 2, ...) so that load changes on
the shared machine hit both. Per run: the wall time of the torchrun process, and each rank's peak resident memory
(VmHWM read from /proc/<pid>/status every 0.2 s; a rank is a process whose environment holds RANK), with the load
average before and after.

Projection: per SignRound step every rank runs forward and backward of one decoder block on its 1/N of the global
batch, then all-reduces the block's gradients (`ar_algos.distributed.sync_grads`: the fp32 rounding offsets, one
per weight, and the two fp32 min/max factors per group). So per step

    compute(N) = 6 * block_params * tokens / N + attention  (forward 2x, backward 4x the linear FLOPs) / throughput
    comm       = 2 (N-1)/N * grad_bytes / bus_bandwidth        (ring all-reduce; not overlapped with compute)

and the speedup is compute(1) / (compute(N) + comm). See `--help` for the assumed throughput and links.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# Llama-3 block shapes: hidden, MLP intermediate, attention heads, KV heads, head dim
BLOCKS = {"Llama-3-8B": (4096, 14336, 32, 8, 128), "Llama-3-70B": (8192, 28672, 64, 8, 128)}
# all-reduce bus bandwidth per link in GB/s (assumed effective values; see the README section)
# and the most ranks it joins (NVLink: the 8 GPUs of one host)
LINKS = {"NVLink (H100, 8 GPUs/host)": (400.0, 8), "400 Gb/s InfiniBand": (50.0, 64), "100 GbE": (12.5, 64)}


def block_params(hidden: int, inter: int, heads: int, kv_heads: int, head_dim: int) -> int:
    """Weights of one Llama decoder block's seven linear layers (q, k, v, o, gate, up, down)."""
    q = o = hidden * heads * head_dim
    k = v = hidden * kv_heads * head_dim
    return q + k + v + o + 3 * hidden * inter


def grad_bytes(params: int, group_size: int) -> int:
    """Bytes SignRound all-reduces per step for one block: fp32 offset per weight + two fp32 factors per group."""
    return 4 * params + 2 * 4 * params // group_size


def step_flops(params: int, hidden: int, tokens: int, seqlen: int) -> float:
    """Forward + backward FLOPs of one block on `tokens` tokens (linears 6*params per token; causal attention
    scores and values 2 * 2 * seqlen/2 * hidden per token forward, x3 with backward)."""
    return 6.0 * params * tokens + 3 * 2.0 * seqlen * hidden * tokens


def project(tflops: float, batch: int, seqlen: int, group_size: int, world_sizes: list[int]) -> None:
    """Print the projected step time and speedup per model, link and number of ranks."""
    tokens = batch * seqlen
    print(f"\nprojection: global batch {batch} x {seqlen} tokens per step, W4 group {group_size}, "
          f"{tflops:.0f} TFLOP/s sustained per GPU, ring all-reduce not overlapped with compute")
    for model, shape in BLOCKS.items():
        params = block_params(*shape)
        nbytes = grad_bytes(params, group_size)
        one = step_flops(params, shape[0], tokens, seqlen) / (tflops * 1e12)
        print(f"{model}: block {params / 1e6:.1f} M weights, all-reduce {nbytes / 1e9:.3f} GB per step, "
              f"compute {one * 1e3:.1f} ms per step on 1 GPU")
        for link, (gbs, most) in LINKS.items():
            cells = []
            for n in (n for n in world_sizes if n <= most):
                comm = 2 * (n - 1) / n * nbytes / (gbs * 1e9)
                step = one / n + comm
                cells.append(f"N={n}: {step * 1e3:.1f} ms ({one / step:.2f}x, comm {comm * 1e3:.1f} ms)")
            print(f"  {link:28s} " + "; ".join(cells))


def make_model(layers: int, root: Path) -> Path:
    """The embedded SmolLM2-135M cut to its first `layers` decoder blocks, saved once under `root`."""
    target = root / f"smollm2-135m-{layers}l"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ar_algos.models import embedded_model_path

    src = embedded_model_path("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(src)
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(src).save_pretrained(target)
    return target


def _ranks_below(pid: int) -> dict[int, int]:
    """{pid: RANK} of the processes below `pid` whose environment holds RANK (torchrun's workers)."""
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            env = Path(f"/proc/{p}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)
        if rank is not None and p != pid:
            found[p] = rank
        todo.extend(int(c) for c in children)
    return found


def _peak_kib(pid: int) -> int | None:
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1])


def block_seconds(output: str) -> float:
    """The summed block times of `ar quantize`'s progress lines ("block 2/4  loss ...  12.3s  ETA ..." or 1m05s)."""
    total = 0.0
    for m in re.finditer(r"^block \d+/\d+ .*?  (?:(\d+)m(\d+)s|([\d.]+)s)  ETA", output, re.M):
        total += float(m[3]) if m[3] else 60 * int(m[1]) + int(m[2])
    return total


def run_once(nproc: int, model: Path, out: Path, knobs: list[str]) -> tuple[float, float, dict[int, float]]:
    """One torchrun of `ar quantize`; returns (wall seconds, block-tuning seconds, {rank: peak RSS in MiB})."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "ar_cli",
           "quantize", str(model), *knobs, "--output_dir", str(out)]
    peaks: dict[int, int] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        for pid, rank in _ranks_below(proc.pid).items():
            kib = _peak_kib(pid)
            if kib is not None:
                peaks[rank] = max(peaks.get(rank, 0), kib)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"torchrun with {nproc} ranks failed:\n{''.join(lines)[-3000:]}")
    return wall, block_seconds("".join(lines)), {r: kib / 1024 for r, kib in sorted(peaks.items())}


def measure(args: argparse.Namespace) -> None:
    """Alternate 1 and 2 ranks for `args.rounds` rounds and print wall times, peaks and the ratio of medians."""
    model = make_model(args.layers, Path(args.out))
    knobs = ["--scheme", "W4A16", "--group_size", "32", "--iters", str(args.iters), "--nsamples", str(args.nsamples),
             "--seqlen", str(args.seqlen), "--batch_size", str(args.batch_size), "--dataset", "wiki",
             "--disable_model_free"]
    print(f"model {model} ({args.layers} of SmolLM2's 30 blocks); ar quantize {' '.join(knobs)}; "
          f"1 thread per rank; cpus {os.cpu_count()}")
    walls: dict[int, list[tuple[float, float]]] = {n: [] for n in args.world_sizes}
    for r in range(args.rounds):
        for n in args.world_sizes:
            before = os.getloadavg()
            wall, tuning, peaks = run_once(n, model, Path(args.out) / f"out{n}", knobs)
            walls[n].append((wall, tuning))
            mem = ", ".join(f"rank {k} {v:.0f} MiB" for k, v in peaks.items())
            print(f"round {r} ranks {n}: wall {wall:6.1f} s  blocks {tuning:6.1f} s  peak RSS {mem}  "
                  f"load before {before[0]:.2f} after {os.getloadavg()[0]:.2f}", flush=True)
    med = {n: (statistics.median(w for w, _ in v), statistics.median(t for _, t in v)) for n, v in walls.items()}
    for n, (wall, tuning) in med.items():
        print(f"median ranks {n}: wall {wall:.1f} s, blocks {tuning:.1f} s")
    if 1 in med and 2 in med:
        print(f"speedup 2 ranks / 1 rank: wall {med[1][0] / med[2][0]:.2f}x, blocks {med[1][1] / med[2][1]:.2f}x")
    print(f"load average at the end {os.getloadavg()}")


def main() -> None:
    """Parse the flags, measure on this CPU (unless --project_only) and print the GPU projection."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4, help="SmolLM2 blocks kept (of 30)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--batch_size", type=int, default=8, help="the global batch (each rank runs 1/N of it)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--world_sizes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="/tmp/ar-bench/distributed-speed")
    ap.add_argument("--project_only", action="store_true", help="print the projection without measuring")
    ap.add_argument("--tflops", type=float, default=400.0,
                    help="sustained bf16 TFLOP/s per GPU (H100 SXM dense peak 989; 40%% assumed)")
    ap.add_argument("--project_batch", type=int, default=8, help="global batch of the projected run")
    ap.add_argument("--project_seqlen", type=int, default=2048)
    ap.add_argument("--project_group_size", type=int, default=128)
    args = ap.parse_args()
    if not args.project_only:
        measure(args)
    project(args.tflops, args.project_batch, args.project_seqlen, args.project_group_size, [2, 4, 8, 16])


if __name__ == "__main__":
    main()
