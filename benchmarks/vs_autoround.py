"""Ours (`ar_algos.AutoRound`) against the reference `auto-round` 0.16.1 from PyPI, in one run, on one model.

Each system quantizes in its own child process (same model file and dtype, same calibration token ids drawn from
the `wiki` train split by `ar_algos.data.get_calibration_data`, same seed, same thread count and knobs) and saves
the result in the auto_round format; the child reports its wall time and peak resident memory (getrusage).
The parent then evaluates both checkpoints the same way: `ar_eval.evaluate` loads each through `ar_kernels.load`
and scores it against the 16-bit model (loaded in float32) on the same windows of the held-out `wiki` test split
(perplexity, KL divergence, top-1 agreement). It prints one markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vs_autoround.py --model smollm2-135m --scheme W2A16 \
        --group_size 64 --iters 16 --nsamples 8 --seqlen 32 --batch_size 4 --eval_windows 4 --threads 1 --parallel

Results and the commands used are in benchmarks/README.md ("Against the reference auto-round 0.16.1").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEMS = ("ours", "reference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (the knobs are shared by both systems)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="embedded model name or a local model directory")
    p.add_argument("--scheme", default="W4A16", help="preset name, e.g. W4A16 or W2A16")
    p.add_argument("--bits", type=int, default=None)
    p.add_argument("--group_size", type=int, default=128)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--amp", action="store_true", help="let both systems use bf16 autocast (default: fp32 throughout)")
    p.add_argument("--blocks", type=int, default=None, help="quantize only the first N decoder blocks "
                   "(model.layers.0..N-1) in both systems; the rest of the model stays 16-bit")
    p.add_argument("--dtype", default="float32", help="dtype the model is loaded in for quantization")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2, help="torch threads in each child")
    p.add_argument("--eval_windows", type=int, default=8, help="held-out windows of --eval_seqlen tokens")
    p.add_argument("--eval_seqlen", type=int, default=512)
    p.add_argument("--systems", default="ours,reference", help="comma-separated subset of ours,reference")
    p.add_argument("--work", default=None, help="folder for the checkpoints and child reports (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write all results to this JSON file")
    p.add_argument("--parallel", action="store_true", help="run the systems' children at the same time (both see the "
                   "same machine load) instead of back to back")
    p.add_argument("--reuse", action="store_true", help="evaluate the checkpoints a finished run left in --work "
                   "instead of quantizing again (per system, when its <system>.json is there)")
    p.add_argument("--verbose", action="store_true", help="our child prints its progress lines (block i/N, loss)")
    p.add_argument("--child", choices=SYSTEMS, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in args.systems if s not in SYSTEMS]
    if bad or not args.systems:
        p.error(f"--systems {','.join(bad) or '(empty)'}: choose from {','.join(SYSTEMS)}")
    return args


def model_dir(name: str) -> Path:
    """A local directory for `name`: an existing path, else an embedded model (converted once, then cached)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from ar_algos.models import embedded_model_path

    return embedded_model_path(name)


def calibration(tokenizer, args: argparse.Namespace) -> list[dict]:
    """The shared calibration samples: nsamples x seqlen token ids from the wiki train split (seeded)."""
    from ar_algos.data import get_calibration_data

    return get_calibration_data(tokenizer, "wiki", nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed)


def block_subset(args: argparse.Namespace, nested: bool = False) -> dict:
    """`to_quant_block_names` for --blocks (the reference takes a list of block lists: `nested`), or nothing."""
    if args.blocks is None:
        return {}
    names = [f"model.layers.{i}" for i in range(args.blocks)]
    return {"to_quant_block_names": [names] if nested else names}


def run_ours(model, tokenizer, samples: list[dict], args: argparse.Namespace, out: Path) -> None:
    """Quantize with ar_algos.AutoRound and save in the auto_round format."""
    from ar_algos import AutoRound

    ar = AutoRound(model, tokenizer=tokenizer, scheme=args.scheme, bits=args.bits, group_size=args.group_size,
                   samples=samples, iters=args.iters, nsamples=args.nsamples, seqlen=args.seqlen,
                   batch_size=args.batch_size, amp=args.amp, seed=args.seed, device="cpu",
                   verbose=args.verbose, **block_subset(args))
    ar.quantize_and_save(out, format="auto_round")


def run_reference(model, tokenizer, samples: list[dict], args: argparse.Namespace, out: Path) -> None:
    """Quantize with the reference auto-round (CPU, no torch.compile) and save in its auto_round format."""
    from auto_round import AutoRound

    kw = {**block_subset(args, nested=True), **({} if args.bits is None else {"bits": args.bits})}
    ar = AutoRound(model, tokenizer, scheme=args.scheme, group_size=args.group_size, dataset=[
        s["input_ids"] for s in samples], iters=args.iters, nsamples=args.nsamples, seqlen=args.seqlen,
        batch_size=args.batch_size, amp=args.amp, seed=args.seed, device_map="cpu", enable_torch_compile=False, **kw)
    ar.quantize_and_save(str(out), format="auto_round")


def child(args: argparse.Namespace) -> None:
    """Quantize with one system; write {seconds, peak_rss_mb, checkpoint} as JSON to stdout's last line."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    src = model_dir(args.model)
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, args.dtype)).eval()
    samples = calibration(tokenizer, args)
    out = Path(args.work) / args.child
    start = time.perf_counter()
    (run_ours if args.child == "ours" else run_reference)(model, tokenizer, samples, args, out)
    seconds = time.perf_counter() - start
    ckpt = next(p.parent for p in sorted(out.rglob("config.json")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"seconds": seconds, "peak_rss_mb": peak, "checkpoint": str(ckpt), "samples": len(samples)}
    print(json.dumps(report))


def start_child(system: str, argv: list[str], work: Path, threads: int) -> tuple[subprocess.Popen, float]:
    """Start quantizing with `system` in a fresh Python process; returns (the process, its start time)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, *argv, "--work", str(work), "--child", system]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True), time.perf_counter()


def finish_child(system: str, proc: subprocess.Popen, start: float, work: Path) -> dict:
    """Wait for a child; returns its report (wall time of the whole process added), also saved in `work`."""
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{system} failed (exit {proc.returncode}); its stderr is above")
    report = json.loads(out.strip().splitlines()[-1])
    report["process_seconds"] = time.perf_counter() - start
    (work / f"{system}.json").write_text(json.dumps(report))
    print(f"{system}: {report}", file=sys.stderr, flush=True)
    return report


def evaluate_checkpoint(ckpt: str, reference: Path, args: argparse.Namespace, name: str) -> dict:
    """ar_eval.evaluate of one checkpoint against the 16-bit model on the held-out wiki test windows."""
    from ar_eval import EvalProtocol, evaluate

    protocol = EvalProtocol(seqlen=args.eval_seqlen, max_windows=args.eval_windows)
    return evaluate(ckpt, reference=reference, text="wiki", protocol=protocol, name=name, show_progress=False)


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    """One markdown table: quality against the 16-bit model, time and peak memory per system."""
    first = next(iter(results.values()))
    head = ("| system | ppl | KL mean | KL p99 | top-1 | bits/weight | quantize+save s | child process s | "
            "peak RSS MB |\n|---|---|---|---|---|---|---|---|---|")
    rows = [f"| 16-bit | {first['ppl_reference']:.3f} | – | – | – | 16 | – | – | – |"]
    for system, r in results.items():
        rows.append(f"| {system} | {r['ppl']:.3f} | {r['kl_mean']:.4f} | {r['kl_p99']:.3f} | "
                    f"{100 * r['top1_agreement']:.1f}% | {r['bits_per_weight']:.3f} | {r['seconds']:.0f} | "
                    f"{r['process_seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    knobs = (f"{args.model}, {args.scheme} g{args.group_size}{f' bits {args.bits}' if args.bits else ''}, iters "
             f"{args.iters}, nsamples {first['samples']}x{args.seqlen}, batch {args.batch_size}, "
             f"{'amp' if args.amp else 'fp32'}, {args.threads} threads"
             f"{f', first {args.blocks} blocks' if args.blocks else ''}; eval {first['n_windows']}x{args.eval_seqlen} "
             f"wiki test tokens ({first['n_scored']} scored)")
    return "\n".join([knobs, "", head, *rows])


def main(argv: list[str] | None = None) -> None:
    """Quantize with each system in turn, evaluate both, print the table."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    work = Path(args.work or tempfile.mkdtemp(prefix="vs_autoround_"))
    passthrough = _drop_values(argv, ("--work", "--json"))
    reference = model_dir(args.model)
    load = os.getloadavg()
    todo = [s for s in args.systems if not (args.reuse and (work / f"{s}.json").is_file())]
    results = {s: json.loads((work / f"{s}.json").read_text()) for s in args.systems if s not in todo}
    if args.parallel:
        running = {s: start_child(s, passthrough, work, args.threads) for s in todo}
        results.update({s: finish_child(s, *running[s], work) for s in todo})
    else:
        results.update({s: finish_child(s, *start_child(s, passthrough, work, args.threads), work) for s in todo})
    results = {s: results[s] for s in args.systems}
    for system, r in results.items():
        r.update(evaluate_checkpoint(r["checkpoint"], reference, args, system))
    print(table(results, args))
    print(f"\nload average before the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))


def _drop_values(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """argv without the options `names` (as `--name value` or `--name=value`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in names:
            skip = True
        elif not a.startswith(tuple(f"{n}=" for n in names)):
            out.append(a)
    return out


if __name__ == "__main__":
    main()
