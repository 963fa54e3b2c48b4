"""Flags of the reference `auto-round` 0.16.1 CLI that `ar` does not take, each with why and what to use instead.

`ar` refuses them with a message naming the flag (instead of argparse's generic "unrecognized arguments"), so a
command line carried over from the reference fails plainly, never silently. The table covers every option string of
the reference's quantize parser that `ar quantize` lacks (test_cli_reference_flags checks it against the installed
auto-round when there is one); `--device` / `--devices` are left to ar's own device flag handling.
"""

from __future__ import annotations

from .flags import UsageError

ACTIVATIONS = ("ar takes the activation settings from the scheme: pick a preset that quantizes activations the way "
               "you need (`ar list schemes`: INT8_W8A8, W4A4, MXFP4, MXFP8, NVFP4, FP8_STATIC)")
STATIC_KV = "static KV-cache and attention quantization are not implemented in ar; drop it"
AWQ = ("ar's AWQ tuning knobs exist only in Python (AutoRound(..., algorithm='awq', awq_n_grid=..., "
       "awq_duo_scaling=..., awq_clip=...)); on the command line --algorithm awq runs with their defaults")
ROTATION = ("ar chooses rotations with --rotation (hadamard, random, block, block:64, r1, r1r2, r1r2r4); "
            "see `ar quantize --help`")
SVDQUANT = "SVDQuant is not implemented in ar; drop it"
DIFFUSION = ("ar quantizes diffusion pipelines (`ar quantize PIPELINE_DIR`, docs/guide/diffusion.md) without this "
             "option; drop it")
LM_EVAL = ("ar runs lm-eval's hf backend through --tasks, --eval_bs, --limit and --num_fewshot only; run lm-eval "
           "yourself on the saved checkpoint for more")
EXPERIMENTAL = "an option of the reference's experimental tuning algorithms that ar does not implement; drop it"


def _alias(ours: str) -> str:
    return f"ar spells it {ours}"


REFERENCE_FLAGS: dict[str, str] = {
    # spellings of flags ar has under another name
    "--bit": _alias("--bits"), "--iter": _alias("--iters"), "--nsample": _alias("--nsamples"),
    "--seq_len": _alias("--seqlen"), "--train_bs": _alias("--batch_size (or --bs)"),
    "--model_name": _alias("MODEL or --model"), "--model_name_or_path": _alias("MODEL or --model"),
    "--formats": _alias("--format (a comma list)"), "--task": _alias("--tasks"), "--option": _alias("--options"),
    "--num-fewshot": _alias("--num_fewshot"),
    **{f: _alias("--algorithm (rtn, opt-rtn, awq, awq,auto_round)")
       for f in ("--algorithms", "--alg", "--algs", "--alg_config", "--alg_configs")},
    "--schemes": "ar's AutoScheme takes its candidates as --options with --avg_bits",
    # defaults of ar, and the reference's spellings to turn them on or off
    "--enable_minmax_tuning": "min/max tuning is on by default in ar; drop it (--disable_minmax_tuning turns it off)",
    "--no-enable_minmax_tuning": _alias("--disable_minmax_tuning"),
    "--enable_quanted_input": "quantized-input propagation is on by default in ar; drop it",
    "--no-enable_quanted_input": _alias("--disable_quanted_input"),
    "--no-not_use_best_mse": "keeping the best-MSE state is ar's default; drop it",
    "--no-enable_adam": "sign-gradient descent (no Adam) is ar's default; drop it",
    "--no-quant_lm_head": "lm_head stays in 16 bits by default in ar; drop it",
    "--enable_opt_rtn": "with --iters 0 ar runs optimized RTN unless --disable_opt_rtn; or use --recipe opt-rtn",
    "--disable_torch_compile": "ar compiles only with --enable_torch_compile; drop it",
    "--enable_deterministic_algorithms": _alias("--deterministic"),
    "--low_cpu_mem_usage": "ar loads the model once in its checkpoint dtype; drop it",
    "--disable_low_cpu_mem_usage": "ar loads the model once in its checkpoint dtype; drop it",
    "--disable_trust_remote_code": "ar runs no remote code unless --trust_remote_code; drop it",
    # SignRound variants ar does not implement
    "--momentum": "ar's SignRound is plain sign-gradient descent without momentum (the reference's default, 0); "
                  "drop it, or try --enable_adam or a longer --iters",
    **{f: "the SignRoundV2 extension is not implemented in ar; --recipe best (more iters and samples) is the "
          "nearest" for f in ("--enable_alg_ext", "--no-enable_alg_ext")},
    **{f: "the last-block LM cross-entropy loss (LFQ) is not implemented in ar; drop it"
       for f in ("--enable_lfq", "--no-enable_lfq")},
    **{f: "norm and bias tuning is not implemented in ar (norms and biases stay as they are); drop it"
       for f in ("--enable_norm_bias_tuning", "--no-enable_norm_bias_tuning")},
    "--enable_neuqi": "the NeUQI grid search is not implemented in ar; optimized RTN (--iters 0) searches the scales",
    **{f: EXPERIMENTAL for f in ("--loss_type", "--kl_top_k", "--layerwise", "--no-layerwise", "--smooth_lr",
                                 "--trainable_smooth", "--no-trainable_smooth", "--trainable_rotation",
                                 "--no-trainable_rotation")},
    # scheme details
    **{f: ACTIVATIONS for f in ("--act_group_size", "--act_asym", "--act_data_type", "--act_dtype",
                                "--disable_act_dynamic")},
    **{f: "GGUF k-quant super-blocks are fixed by the GGUF scheme; use --scheme gguf:q4_k_m (or another k-quant)"
       for f in ("--super_bits", "--super_group_size")},
    "--scale_dtype": "the scale dtype follows the scheme and the format (`ar list schemes`); drop it",
    **{f: STATIC_KV for f in ("--static_kv_dtype", "--static_kv_granularity", "--static_attention_dtype",
                              "--static_attention_granularity")},
    # layer and block selection, loading, saving
    "--to_quant_block_names": "ar finds the decoder blocks itself; --ignore_layers keeps layers in 16 bits",
    "--model_dtype": "ar loads the model in its checkpoint dtype and saves the 16-bit tensors in it; drop it",
    "--platform": "ar loads local directories, Hugging Face hub ids and its embedded models only; drop it",
    "--max_shard_size": "ar writes 5GB shards, like the reference's default; drop it",
    **{f: "a debugging option of the reference (load the first N layers) that ar does not take; drop it"
       for f in ("--num_hidden_layers", "--debug_layer_num")},
    # algorithms' own flags
    **{f: AWQ for f in ("--awq_n_grid", "--awq-n-grid", "--awq_duo_scaling", "--awq-duo-scaling", "--awq_apply_clip",
                        "--awq-apply-clip", "--awq_clip_as_init", "--awq-clip-as-init", "--awq_seqlen",
                        "--awq_smooth_batch_size")},
    **{f: ROTATION for f in ("--rotation_type", "--rotation-hadamard-type", "--rotation_backend",
                             "--rotation_block_size", "--rotation_size", "--fuse_online_to_weight",
                             "--no-fuse_online_to_weight", "--allow_online_rotation", "--no-allow_online_rotation",
                             "--online_r1_rotation", "--no-online_r1_rotation", "--fuse_rmsnorm", "--no-fuse_rmsnorm",
                             "--untie_embeddings", "--no-untie_embeddings",
                             *(f"--{no}{kind}r{i}" for no in ("", "no-") for kind in ("", "random_")
                               for i in range(1, 5)))},
    **{f: SVDQUANT for f in ("--svdquant-rank", "--svdquant-residual-iters", "--svdquant-low-rank-dtype",
                             "--svdquant-model-adapter", "--svdquant-target-modules", "--svdquant-exclude-modules",
                             "--svdquant-smooth-num-grids", "--svdquant-smooth-max-calibration-calls",
                             "--enable-svdquant-smooth", "--enable-svdquant-residual-early-stop")},
    # multimodal, diffusion, evaluation
    "--quant_nontext_module": "ar keeps vision and audio towers in 16 bits; drop it",
    "--template": "ar applies the model's own chat template for VLM calibration (--mllm); drop it",
    "--extra_data_dir": "ar calibrates VLMs on text plus its built-in images (--mllm); drop it",
    **{f: DIFFUSION for f in ("--diffusion_tuning_cache_size", "--image_save_dir", "--metric", "--metrics",
                              "--prompt")},
    "--calib_num_inference_steps": _alias("--num_inference_steps (the calibration run's denoising steps)"),
    "--generator_seed": _alias("--seed"), "--prompt_file": _alias("--dataset (a .txt/.tsv/.json caption file)"),
    **{f: LM_EVAL for f in ("--eval_backend", "--vllm_args", "--eval_task_by_task", "--eval_model_dtype",
                            "--add_bos_token", "--eval_gen_kwargs", "--eval-gen-kwargs", "--fewshot_as_multiturn",
                            "--fewshot-as-multiturn")},
}


def refuse_reference_flags(unknown: list[str]) -> None:
    """Raise UsageError for the first argument in `unknown` (argparse's leftovers) that is a flag of the reference
    auto-round which ar does not support, saying why and what to use instead; return when there is none."""
    for arg in unknown:
        flag = arg.split("=", 1)[0]
        if flag in REFERENCE_FLAGS:
            raise UsageError(f"{flag} is a flag of the reference auto-round that ar does not support: "
                             f"{REFERENCE_FLAGS[flag]}")
