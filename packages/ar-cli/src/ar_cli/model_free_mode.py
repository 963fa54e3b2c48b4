"""`ar quantize MODEL --model_free`: plain RTN straight from the safetensors shards (ar_algos.model_free), without
loading the model; only the scheme, layer selection, format and output flags apply. With --avg_bits the model is
loaded once for AutoScheme's scoring, and the chosen layer_config is then quantized model-free."""

from __future__ import annotations

import argparse
from pathlib import Path

from ar_eval.size import saved_summary

from .flags import UsageError

# Flags (default None) that need a loaded model or calibration, so they mean nothing in model-free mode.
NEEDS_MODEL = ("lr", "minmax_lr", "nsamples", "seqlen", "batch_size", "gradient_accumulate_steps", "adam", "seed",
               "device_map", "low_gpu_mem_usage", "enable_torch_compile", "rotation", "nblocks", "not_use_best_mse",
               "dynamic_max_gap", "disable_minmax_tuning", "disable_quanted_input", "disable_amp", "deterministic",
               "start_from_rtn", "resume")


def check_model_free(args: argparse.Namespace, formats: list[str], user_set: set[str]) -> None:
    """Refuse flags that model-free mode cannot honour (it is plain RTN over the files, one format)."""
    for name in NEEDS_MODEL:
        if name in user_set:
            raise UsageError(f"--{name} has no effect with --model_free (plain RTN from the files, no model or "
                             "calibration data): drop it, or drop --model_free")
    if "dataset" in user_set and args.avg_bits is None:
        raise UsageError("--dataset has no effect with --model_free unless --avg_bits scores the layers on it")
    if args.iters:
        raise UsageError(f"--model_free is plain RTN and contradicts --iters {args.iters}")
    if args.algorithm is not None and args.algorithm.replace("_", "-").lower() != "rtn":
        raise UsageError(f"--model_free is plain RTN and contradicts --algorithm {args.algorithm}")
    if args.recipe not in ("default", "rtn"):
        raise UsageError(f"--model_free is plain RTN and contradicts --recipe {args.recipe}")
    if args.disable_model_free:
        raise UsageError("--model_free contradicts --disable_model_free")
    if args.mllm:
        raise UsageError("--model_free does not take --mllm (it quantizes the files of any model as they are)")
    if len(formats) != 1:
        raise UsageError(f"--model_free writes one format, not --format {args.format}")
    if args.model_free_workers is not None and args.model_free_workers < 1:
        raise UsageError(f"--model_free_workers {args.model_free_workers}: give a number of processes >= 1")
    if args.limit is not None and not args.tasks:
        raise UsageError("--limit only applies with --tasks")


def check_options(options) -> None:
    """AutoScheme options must be schemes model-free mode can write (checked before the model is scored)."""
    from ar_algos.model_free import supported
    from ar_algos.model_free.run import SUPPORTED

    bad = next((o for o in options if not supported(o.scheme)), None)
    if bad is not None:
        raise UsageError(f"--options {bad.value}: --model_free writes {SUPPORTED}")


def run_model_free(args: argparse.Namespace, model_dir: Path, scheme, fmt: str, out_dir: Path,
                   layer_config: dict | None) -> Path:
    """Quantize `model_dir` with RTN into `out_dir` as `fmt`; prints and returns the saved path."""
    from ar_algos.model_free import quantize_model_free

    result = quantize_model_free(model_dir, out_dir, scheme=scheme, layer_config=layer_config,
                                 ignore_layers=args.ignore_layers, quant_lm_head=args.quant_lm_head, format=fmt,
                                 overwrite=args.overwrite, workers=args.model_free_workers or 1)
    print(f"model-free RTN: {len(result.plan.quantized())} layers in {result.seconds:.1f} s")
    print(f"saved {result.path}: {saved_summary(result.path, args.trust_remote_code)}")
    return result.path
