"""What the end-to-end stage (`e2e_steps`) buys and costs: one run, one model, the same block pass.

Quantizes the model with `ar_algos.AutoRound` (block pass only), scores it against the 16-bit model on held-out
windows of the `wiki` test split (calibration uses the train split), then runs `ar_algos.e2e.distill` on that same
quantized model (teacher top-k from the 16-bit model on the calibration samples) for each requested number of steps
in turn (cumulative) and scores it again. Prints one markdown table: held-out ppl, mean KL, top-1, seconds and the
process's peak resident memory after each stage.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/e2e_kl.py --scheme W2A16 --group_size 64 --iters 0 \
        --nsamples 16 --seqlen 128 --batch_size 4 --e2e_steps 10,30 --eval_windows 4 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from dataclasses import replace

import torch


def parse_args(argv=None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--scheme", default="W2A16")
    p.add_argument("--group_size", type=int, default=64)
    p.add_argument("--sym", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--iters", type=int, default=0, help="block pass: SignRound iters (0: optimized RTN)")
    p.add_argument("--nsamples", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--e2e_steps", default="10,30", help="comma list of cumulative step counts to score at")
    p.add_argument("--e2e_lr", type=float, default=None)
    p.add_argument("--e2e_topk", type=int, default=None)
    p.add_argument("--eval_windows", type=int, default=4)
    p.add_argument("--eval_seqlen", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def peak_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> None:
    """Block pass, score, then e2e in stages, score after each; print the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ar_algos import AutoRound
    from ar_algos.data import get_calibration_data
    from ar_algos.e2e import distill, teacher_topk
    from ar_algos.models import embedded_model_path
    from ar_eval import EvalProtocol, kl_divergence, load_text, tokenize

    src = embedded_model_path(args.model)
    tok = AutoTokenizer.from_pretrained(src)
    ref = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    model = copy.deepcopy(ref)
    samples = get_calibration_data(tok, "wiki", nsamples=args.nsamples, seqlen=args.seqlen, seed=42)
    ids = tokenize(tok, load_text("wiki")[0])
    protocol = EvalProtocol(seqlen=args.eval_seqlen, max_windows=args.eval_windows)
    load = os.getloadavg()
    extra = {k: v for k, v in dict(sym=args.sym, e2e_lr=args.e2e_lr, e2e_topk=args.e2e_topk).items() if v is not None}
    tick = time.perf_counter()
    ar = AutoRound(model, tokenizer=tok, scheme=args.scheme, group_size=args.group_size, samples=samples,
                   iters=args.iters, nsamples=args.nsamples, seqlen=args.seqlen, batch_size=args.batch_size,
                   amp=False, seed=42, device="cpu", verbose=False, **extra)
    _, records = ar.quantize()
    rows = [("block pass", time.perf_counter() - tick)]
    t = time.perf_counter()
    teacher = teacher_topk(ref, samples, ar.cfg.e2e_topk, torch.device("cpu"))
    teacher_s = time.perf_counter() - t
    results = []

    def score(name: str, seconds: float, summary: dict | None = None) -> None:
        r = kl_divergence(model, ref, ids, protocol)
        results.append(dict(stage=name, seconds=seconds, ppl=r.ppl_quantized, ppl_ref=r.ppl_reference,
                            kl=r.kl_mean, kl_p99=r.kl_p99, top1=r.top1_agreement, peak_mb=peak_mb(),
                            calib_kl=None if summary is None else summary["kl_after"]))
        print(json.dumps(results[-1]), flush=True)

    score(*rows[0])
    done = 0
    for steps in [int(s) for s in args.e2e_steps.split(",")]:
        cfg = replace(ar.cfg, e2e_steps=steps - done, seed=ar.cfg.seed + done)
        records, summary = distill(model, ar.block_names, records, samples, teacher, cfg, torch.device("cpu"))
        done = steps
        score(f"+ e2e {steps} steps", summary["seconds"] + (teacher_s if len(results) == 1 else 0.0), summary)
    head = ("| stage | ppl | KL mean | KL p99 | top-1 | calibration KL | seconds | peak RSS MB |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [f"| 16-bit | {results[0]['ppl_ref']:.3f} | – | – | – | – | – | – |"]
    lines += [f"| {r['stage']} | {r['ppl']:.3f} | {r['kl']:.4f} | {r['kl_p99']:.3f} | {100 * r['top1']:.1f}% | "
              f"{'–' if r['calib_kl'] is None else format(r['calib_kl'], '.4f')} | {r['seconds']:.0f} | "
              f"{r['peak_mb']:.0f} |" for r in results]
    print(f"{args.model} {args.scheme} g{args.group_size} iters {args.iters}, {args.nsamples}x{args.seqlen} wiki "
          f"train, batch {args.batch_size}, e2e lr {ar.cfg.e2e_lr} top-k {ar.cfg.e2e_topk}, {args.threads} thread(s); "
          f"eval {args.eval_windows}x{args.eval_seqlen} wiki test; load {load[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("\n".join([head, *lines]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
