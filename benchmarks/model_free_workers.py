"""Model-free RTN wall time and peak memory with 1, 2, ... worker processes on a sharded random Llama.

    for w in 1 2 1 2 1 2; do .venv/bin/python benchmarks/model_free_workers.py --workers $w; done

Builds (once, cached under --src) a random bf16 Llama of about 500M parameters saved as 7 shards (6 of ~152 MiB
and the LM head), then runs `quantize_model_free` per worker count and prints its wall seconds, the peak summed
memory (PSS: pages shared by forked processes counted once) of this process and all of its descendants (workers,
fork server, and the child process that plans when the header planner falls back to a meta model) and the peak
tensor bytes a worker held. Run each worker count in a
fresh process (the default `--repeat 1`) so that every run pays its own imports; the source is built in a spawned
process so that this one never imports transformers (model-free mode plans in this process when it has).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import torch


def _build(path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=26,
                         num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path, max_shard_size=f"{params * 2 // 6 // 2**20 + 1}MB")
    print(f"built {params / 1e6:.0f}M params, {len(list(path.glob('*.safetensors')))} shards in {path}")


def _children(pid: int) -> list[int]:
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids.extend(int(c) for c in f.read().split())
    return kids


def _status_kib(pid: int, *fields: str) -> list[int]:
    """Fields of /proc/<pid>/status in KiB (VmRSS: resident now, VmHWM: peak resident since start or reset)."""
    with open(f"/proc/{pid}/status") as f:
        found = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in fields}
    return [found[k] for k in fields]


def _role(pid: int, root: int, parent: int) -> str:
    """parent (this process); fork server, resource tracker or plan (the child process that describes the layers:
    its children); worker (forked by the server)."""
    if pid == root:
        return "parent"
    if parent != root:
        return "worker"  # forked from the fork server, whose command line it shares
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read()
    if b"describe_child" in cmd:
        return "plan"
    return "fork server" if b"forkserver" in cmd else "resource tracker" if b"resource_tracker" in cmd else "child"


class PeakMemory:
    """Samples this process tree every 10 ms: the summed PSS (pages shared by forked processes counted once) as
    `tree_peak` (`tree_start` before the run), and per process its role and peak RSS (the kernel's VmHWM, so no
    peak is missed between samples) in `procs` (pid -> [role, peak RSS bytes])."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset this process's VmHWM so the parent's peak is this run's
        self.tree_peak, self.procs, self._stop = 0, {}, False
        self._sample()
        self.tree_start = self.tree_peak
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        root, total, stack = os.getpid(), 0, [(os.getpid(), 0)]
        while stack:
            pid, parent = stack.pop()
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
                hwm = _status_kib(pid, "VmHWM")[0] * 1024
                entry = self.procs.setdefault(pid, [_role(pid, root, parent), hwm])
                entry[1] = max(entry[1], hwm)
                stack.extend((c, pid) for c in _children(pid))
            except (FileNotFoundError, ProcessLookupError, StopIteration, KeyError):
                continue
        self.tree_peak = max(self.tree_peak, total)

    def _watch(self):
        while not self._stop:
            self._sample()
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self._sample()

    def report(self, parent_start: int, shard_bytes: int) -> str:
        """One line per role: peak RSS, and its rise above the post-import baseline (the parent's RSS before the
        run; for workers the fork server's RSS, whose imports they inherit), also in shards."""
        mib = 2**20
        server = [e for e in self.procs.values() if e[0] == "fork server"]
        base = {"parent": parent_start, "worker": server[0][1] if server else 0}
        lines = []
        for role in ("parent", "plan", "fork server", "worker"):
            peaks = [e[1] for e in self.procs.values() if e[0] == role]
            if not peaks:
                continue
            rise = ""
            if role in base:
                above = max(peaks) - base[role]
                rise = f", {above / mib:.0f} MiB above post-import ({above / shard_bytes:.2f} shards)"
            lines.append(f"  {role} x{len(peaks)}: peak RSS {max(peaks) / mib:.0f} MiB{rise}")
        return "\n".join(lines)


def main() -> None:
    """Parse the flags, build the source once, and time each worker count `--repeat` times."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="/tmp/ar-bench/llama-500m-6shards")
    ap.add_argument("--out", default="/tmp/ar-bench/model-free-out")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--scheme", default="W4A16")
    args = ap.parse_args()
    src = Path(args.src)
    if not (src / "config.json").is_file():
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(_build, src).result()
    from ar_algos.model_free import quantize_model_free

    shard_bytes = max(p.stat().st_size for p in src.glob("*.safetensors"))
    print(f"load {os.getloadavg()}  cpus {os.cpu_count()}  torch threads {torch.get_num_threads()}  "
          f"largest shard {shard_bytes / 2**20:.0f} MiB")
    for _ in range(args.repeat):
        for w in args.workers:
            shutil.rmtree(args.out, ignore_errors=True)
            parent_start = _status_kib(os.getpid(), "VmRSS")[0] * 1024
            with PeakMemory() as mem:
                start = time.perf_counter()
                r = quantize_model_free(src, args.out, scheme=args.scheme, workers=w)
                wall = time.perf_counter() - start
            print(f"workers={w} wall {wall:.1f} s  load {os.getloadavg()[0]:.2f}  peak tree PSS "
                  f"{mem.tree_peak / 2**20:.0f} MiB, {(mem.tree_peak - mem.tree_start) / 2**20:.0f} MiB above start "
                  f"({(mem.tree_peak - mem.tree_start) / shard_bytes:.2f} shards)  worker peak "
                  f"tensors {r.worker_peak_bytes / 2**20:.0f} MiB  parent imported transformers: "
                  f"{'transformers' in sys.modules}\n{mem.report(parent_start, shard_bytes)}",
                  flush=True)

if __name__ == "__main__":
    main()
