"""`ar quantize` / `ar eval` on a diffusers pipeline directory (one with model_index.json): ar_mllm.diffusion.

quantize: the DiT denoiser's blocks are quantized (the --scheme/--recipe/--iters/... flags as for LLMs), calibrated
on the captions of --dataset (a .txt/.tsv/.json file, 'coco2014' online, default: embedded captions), --nsamples of
them, run through the pipeline with --num_inference_steps/--guidance_scale/--height/--width/--max_sequence_length.
eval: the quantized pipeline against --reference (the 16-bit one) on fixed prompts and seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ar_core.errors import ArError, field_error

from .flags import UsageError

FLAGS = ("num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length")
# LLM-only flags refused for a pipeline (they would be silently ignored)
LLM_ONLY = ("seqlen", "mllm", "quant_lm_head", "rotation", "avg_bits", "options", "model_free", "awq", "tasks",
            "eval")


def add_flags(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
    """The diffusion-pipeline flags of `ar quantize` (and, with `evaluate`, of `ar eval`)."""
    g = p.add_argument_group("diffusion pipelines (a directory with model_index.json)")
    g.add_argument("--num_inference_steps", type=int, help="denoising steps per prompt (quantize: default 8)")
    g.add_argument("--guidance_scale", type=float, help="classifier-free guidance (default 7.5)")
    g.add_argument("--height", type=int, help="image height (default: the pipeline's)")
    g.add_argument("--width", type=int, help="image width (default: the pipeline's)")
    g.add_argument("--max_sequence_length", type=int, help="T5 prompt tokens (default: the pipeline's)")
    if evaluate:
        g.add_argument("--clip_model", help="a local CLIP model directory: adds CLIP scores")


def is_pipeline(model: str | None) -> bool:
    """Whether MODEL is a local diffusers pipeline directory."""
    from ar_mllm.diffusion.pipeline import is_pipeline_dir

    return model is not None and is_pipeline_dir(model)


def _call_knobs(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in FLAGS if getattr(args, k, None) is not None}


def quantize_pipeline(args: argparse.Namespace, formats: list[str], scheme, out: Path) -> Path:
    """Quantize the pipeline directory args.model with `scheme` and save it into `out`; returns the saved path."""
    from ar_mllm.diffusion import AutoRoundDiffusion
    from ar_mllm.diffusion.pipeline import check_pipeline_dir

    for name in LLM_ONLY:
        if getattr(args, name, None):
            raise UsageError(f"--{name} does not apply to a diffusion pipeline")
    from ar_mllm.diffusion.save import FORMATS_ALLOWED

    check_pipeline_dir(args.model)
    if len(formats) != 1 or formats[0].lower() not in FORMATS_ALLOWED:
        raise field_error(ArError, "format", ",".join(formats), f"one of {', '.join(FORMATS_ALLOWED)} for a "
                          "diffusion pipeline")
    knobs = {k: getattr(args, k) for k in ("iters", "lr", "minmax_lr", "batch_size", "gradient_accumulate_steps",
                                          "nblocks", "dynamic_max_gap", "disable_opt_rtn", "seed")
             if getattr(args, k, None) is not None}
    for flag, knob in (("disable_minmax_tuning", "enable_minmax_tuning"),
                       ("disable_quanted_input", "enable_quanted_input"), ("start_from_rtn", "start_from_opt_rtn")):
        if getattr(args, flag, None):
            knobs[knob] = False
    if args.not_use_best_mse:
        knobs["not_use_best_mse"] = True
    if args.layer_config:
        from .flags import relaxed_json

        knobs["layer_config"] = relaxed_json(args.layer_config, "--layer_config")
    ar = AutoRoundDiffusion(args.model, scheme=scheme, prompts=args.dataset, nsamples=args.nsamples,
                            recipe=args.recipe, ignore_layers=args.ignore_layers, resume=args.resume is not False,
                            **_call_knobs(args), **knobs)
    _, path = ar.quantize_and_save(out, format=formats[0], overwrite=args.overwrite)
    print(f"saved {path}: diffusion pipeline, {formats[0]} transformer")
    return path


def eval_pipeline(args: argparse.Namespace) -> int:
    """`ar eval PIPELINE --reference PIPELINE16`: latent/image PSNR, SSIM (and CLIP score with --clip_model)."""
    from ar_mllm.diffusion import load_pipeline
    from ar_mllm.diffusion.eval import compare_pipelines

    if not args.reference or not is_pipeline(args.reference):
        raise UsageError("a diffusion pipeline is evaluated against its 16-bit source: give --reference PIPELINE_DIR")
    reference = load_pipeline(args.reference, device=args.device)
    prompts = None
    if args.text not in (None, "wiki"):
        from ar_mllm.diffusion.prompts import load_prompts

        prompts = load_prompts(args.text)
    for model in args.models:
        result = compare_pipelines(load_pipeline(model, device=args.device), reference, prompts,
                                   clip_model=args.clip_model, **_call_knobs(args))
        clip = f"CLIP {result['clip_score']:.2f} (16-bit {result['clip_score_16bit']:.2f})" \
            if result["clip_score"] is not None else f"CLIP score: {result['clip_note']}"
        print(f"{model}: latent PSNR {result['latent_psnr']:.2f} dB, image PSNR {result['image_psnr']:.2f} dB, "
              f"SSIM {result['image_ssim']:.4f}, {clip} ({result['prompts']} prompts)")
        if args.save_json:
            Path(args.save_json).mkdir(parents=True, exist_ok=True)
            (Path(args.save_json) / f"{Path(model).name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0
