"""`ar eval MODEL...`: perplexity, KL divergence and top-1 against the 16-bit model, size, lm-eval tasks, comparison."""

from __future__ import annotations

import argparse
from pathlib import Path

from ar_core.errors import ArError
from ar_eval import EvalProtocol, compare_table, evaluate, load_report, plot_quality, save_report
from ar_eval.size import describe_size

from .diffusion_cmd import add_flags as add_diffusion_flags, eval_pipeline, is_pipeline
from .flags import UsageError, comma_list, model_path

METRICS = ("ppl", "kl_mean", "kl_p99", "top1_agreement")


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `ar eval` and its flags (most used first)."""
    p = sub.add_parser("eval", help="perplexity, KL and top-1 against the 16-bit model; lm-eval tasks",
                       allow_abbrev=False, usage="%(prog)s MODEL... [--reference MODEL16] [--text wiki] "
                                                 "[--windows 32] [--seqlen 512] [more flags below]",
                       description="Evaluate one or more checkpoints on a held-out text. With --reference (the "
                                   "16-bit model) also KL divergence and top-1 agreement on the same tokens.")
    p.add_argument("models", nargs="*", metavar="MODEL", help="checkpoint directories, .gguf files or embedded names")
    p.add_argument("--reference", help="the 16-bit model the checkpoints came from (enables KL and top-1)")
    p.add_argument("--text", default="wiki", help="'wiki' (embedded held-out split, default), a text file, "
                                                  "or hf:PATH[:CONFIG[:SPLIT]]")
    p.add_argument("--windows", type=int, default=32, help="score the first N windows (default 32; 0 = all)")
    p.add_argument("--seqlen", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--stride", type=int, help="tokens between windows (default: non-overlapping)")
    p.add_argument("--add_bos", action="store_true", help="put BOS in front of every window (default: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--trust_remote_code", action="store_true",
                   help="let the models run their own Python code from their folders (off by default)")
    p.add_argument("--save_json", help="folder for one JSON report per model")
    p.add_argument("--compare", nargs="+", default=[], metavar="REPORT", help="saved JSON reports to add")
    p.add_argument("--plot", help="write a PNG of --metric against bits per weight")
    p.add_argument("--metric", choices=METRICS, default="ppl", help="quantity on the plot's y axis")
    lm = p.add_argument_group("lm-eval-harness (pip install 'ar-eval[lm-eval]')")
    lm.add_argument("--tasks", help="comma list of lm-eval tasks")
    lm.add_argument("--eval_bs", default="auto")
    lm.add_argument("--limit", type=float, help="examples per task (a fraction when < 1)")
    lm.add_argument("--num_fewshot", type=int)
    lm.add_argument("--include_path", help="folder of offline task YAML files")
    lm.add_argument("--eval_backend", choices=("hf", "vllm"), default="hf")
    add_diffusion_flags(p, evaluate=True)
    return p


def protocol_of(args: argparse.Namespace) -> EvalProtocol:
    """The window protocol named by the flags (--seqlen, --stride, --add_bos, --windows)."""
    if args.windows < 0:
        raise UsageError(f"--windows {args.windows}: give 0 (all) or a positive count")
    try:
        return EvalProtocol(seqlen=args.seqlen, stride=args.stride, add_bos=args.add_bos,
                            max_windows=args.windows or None)
    except ArError as exc:
        raise UsageError(f"--seqlen/--stride: {exc}") from None


def describe(r: dict) -> str:
    """Human-readable lines for one report."""
    pr = r["protocol"]
    lines = [f"{r['name']}: perplexity {r['ppl']:.3f} on {r['text']} ({r['n_windows']} windows x {pr['seqlen']} "
             f"tokens, stride {pr['stride']}, {'BOS' if pr['add_bos'] else 'no BOS'}, {r['n_scored']} tokens scored)"]
    if "kl_mean" in r:
        lines.append(f"  reference perplexity {r['ppl_reference']:.3f} (ratio {r['ppl_ratio']:.4f})")
        lines.append(f"  KL divergence mean {r['kl_mean']:.5f}  median {r['kl_median']:.5f}  "
                     f"p99 {r['kl_p99']:.4f}  max {r['kl_max']:.4f}")
        lines.append(f"  top-1 agreement {100 * r['top1_agreement']:.2f}%")
    lines.append(f"  size {describe_size(r)}")
    for task, metrics in r.get("lm_eval", {}).items():
        lines.append(f"  {task}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return "\n".join(lines)


def _lm_eval(path: Path, args: argparse.Namespace) -> dict:
    from ar_eval.harness import run_lm_eval

    bs = int(args.eval_bs) if str(args.eval_bs).isdigit() else args.eval_bs
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    return run_lm_eval(path, comma_list(args.tasks), eval_bs=bs, limit=limit, num_fewshot=args.num_fewshot,
                       include_path=args.include_path, device=args.device, backend=args.eval_backend,
                       trust_remote_code=args.trust_remote_code)


def evaluate_one(path: Path, reference: Path | None, args: argparse.Namespace, protocol: EvalProtocol) -> dict:
    """Report for one checkpoint (metrics, then lm-eval tasks when --tasks), printed and saved as asked."""
    report = evaluate(path, reference, text=args.text, protocol=protocol, device=args.device,
                      trust_remote_code=args.trust_remote_code)
    if getattr(args, "tasks", None):
        report["lm_eval"] = _lm_eval(path, args)
    print(describe(report), flush=True)
    if getattr(args, "save_json", None):
        save_report(report, Path(args.save_json) / f"{report['name']}.json")
    return report


def evaluate_after_quantize(path: Path, source: Path, args: argparse.Namespace) -> dict:
    """`ar quantize --eval/--tasks`: evaluate the saved model against its source on 8 windows of 'wiki'."""
    ns = argparse.Namespace(text="wiki", device="cpu", save_json=None, eval_backend="hf", **{
        k: getattr(args, k) for k in ("tasks", "eval_bs", "limit", "num_fewshot", "include_path",
                                      "trust_remote_code")})
    return evaluate_one(path, source, ns, EvalProtocol(seqlen=512, max_windows=8))


def run(args: argparse.Namespace) -> int:
    """Evaluate every MODEL, then print a comparison table (and plot) when there are several reports."""
    if not args.models and not args.compare:
        raise UsageError("give at least one MODEL or --compare REPORT")
    if args.limit is not None and not args.tasks:
        raise UsageError("--limit only applies with --tasks")
    from ar_kernels import enable_transformers_integration

    if args.models and all(is_pipeline(m) for m in args.models):  # diffusers pipelines: ar_mllm.diffusion.eval
        return eval_pipeline(args)
    protocol = protocol_of(args)
    enable_transformers_integration()  # lm-eval and from_pretrained load auto-round folders through ar_kernels
    reference = model_path(args.reference) if args.reference else None
    reports = [evaluate_one(model_path(m), reference, args, protocol) for m in args.models]
    reports += [load_report(p) for p in args.compare]
    if len(reports) > 1:
        print(compare_table(reports))
    if args.plot:
        print(f"plot written to {plot_quality(reports, args.plot, args.metric)}")
    return 0
