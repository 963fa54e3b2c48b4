"""`ar quantize MODEL`: quantize with SignRound / opt-RTN / RTN (AutoRound, or AutoRoundMLLM for vision-language
models), optionally after an AutoScheme mixed-bit search, or model-free from the files; export to one or more
formats."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
from contextlib import nullcontext, redirect_stdout
from pathlib import Path

from ar_core.errors import ArError
from ar_core.io import check_output_dir
from ar_core.presets import parse_scheme
from ar_core.registry import ALGORITHMS, FORMATS
from ar_core.scheme import QuantScheme
from ar_eval.size import saved_summary

from .flags import UsageError, comma_list, group_size, model_path, relaxed_json
from .autoscheme_mode import check_autoscheme, make_search, search_layer_config
from .model_free_mode import check_model_free, check_options, run_model_free
from .vlm import detect_vlm
from .diffusion_cmd import add_flags as add_diffusion_flags, is_pipeline, quantize_pipeline

RECIPE_NAMES = ("default", "best", "light", "opt-rtn", "rtn")
# CLI flag -> AutoRound keyword, for the knobs passed straight through when set.
PASS_THROUGH = {"iters": "iters", "lr": "lr", "minmax_lr": "minmax_lr", "nsamples": "nsamples", "seqlen": "seqlen",
                "batch_size": "batch_size", "gradient_accumulate_steps": "gradient_accumulate_steps",
                "nblocks": "nblocks",
                "dataset": "dataset", "low_gpu_mem_usage": "low_gpu_mem_usage",
                "enable_torch_compile": "enable_torch_compile", "disable_opt_rtn": "disable_opt_rtn",
                "seed": "seed", "adam": "enable_adam", "disable_model_free": "disable_model_free", "awq": "awq",
                "not_use_best_mse": "not_use_best_mse", "dynamic_max_gap": "dynamic_max_gap",
                "deterministic": "deterministic", "rotation": "rotation", "e2e_steps": "e2e_steps", "e2e_lr": "e2e_lr"}
# CLI switch -> the AutoRound knob it turns off.
SWITCHED_OFF = {"disable_minmax_tuning": "enable_minmax_tuning", "disable_quanted_input": "enable_quanted_input",
                "disable_amp": "amp", "start_from_rtn": "start_from_opt_rtn"}
# --algorithm NAME -> the iters / disable_opt_rtn it stands for (None: any iters > 0).
ALGORITHM_ROUTES = {"rtn": (0, True), "opt-rtn": (0, False), "signround": (None, None),
                    "auto-round": (None, None)}
LM_HEAD_FORMATS = ("auto_round", "fake", "mlx", "gguf")
SCHEME_FLAGS = ("scheme", "bits", "group_size", "asym", "data_type", "act_bits")
TUNING_ONLY = ("lr", "minmax_lr", "adam", "gradient_accumulate_steps", "nblocks", "not_use_best_mse",
               "dynamic_max_gap", "disable_minmax_tuning", "disable_amp", "start_from_rtn")


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `ar quantize` and its flags (most used first)."""
    p = sub.add_parser("quantize", help="quantize a model and export it", allow_abbrev=False,
                       usage="%(prog)s MODEL [--scheme W4A16] [--format auto_round] [--recipe default] "
                             "[--iters N] [--nsamples N] [--seqlen N] [--output_dir DIR] [more flags below]",
                       description="Quantize MODEL (a local directory, a hub id, or an embedded model such as "
                                   "smollm2-135m) and save it in one or more formats.",
                       epilog="Several processes or hosts: torchrun --nproc-per-node N -m ar_cli quantize MODEL ... "
                              "runs data-parallel (each rank tunes on 1/N of the samples; rank 0 writes; see "
                              "docs/guide/distributed.md).")
    p.add_argument("model", nargs="?", help="model directory, hub id or embedded name (smollm2-135m, "
                                            "qwen2.5-coder-0.5b)")
    main = p.add_argument_group("main")
    main.add_argument("--model", dest="model_flag", metavar="MODEL", help="the model, as a flag (instead of MODEL)")
    main.add_argument("--scheme", help="preset: W4A16 (default), W2A16, W3A16, W8A16, MXFP4, NVFP4, FP8_STATIC, "
                                       "GGUF:Q4_K_M, ... (see `ar list schemes`)")
    main.add_argument("--recipe", choices=RECIPE_NAMES, default="default",
                      help="tuning budget filling the flags you leave unset (see `ar list recipes`)")
    main.add_argument("--format", help="comma list of export formats, e.g. auto_round,gguf:q4_k_m (default "
                                       "auto_round; see `ar list formats`); an explicit format that no consumer can "
                                       "load for this model's layer shapes is refused before quantizing")
    main.add_argument("--output_dir", default="./tmp_autoround", help="parent folder of the saved model")
    main.add_argument("--overwrite", action="store_true", help="replace the saved model's folder when it exists")
    main.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                      help="continue an unfinished run in <output>.work (default) or, with --no-resume, start over")
    main.add_argument("--trust_remote_code", action="store_true",
                      help="let the model run its own Python code from its folder or hub repo (off by default)")
    main.add_argument("--mllm", action="store_true", help="a vision-language model: use ar-mllm's AutoRoundMLLM")
    main.add_argument("--iters", type=int, help="tuning steps per block (0 = RTN / optimized RTN)")
    main.add_argument("--nsamples", type=int, help="calibration samples")
    main.add_argument("--seqlen", type=int, help="tokens per calibration sample")
    sch = p.add_argument_group("scheme overrides")
    sch.add_argument("--bits", type=int)
    sch.add_argument("--group_size", type=group_size, help="an int (-1 per channel, 0 per tensor) or 'M,N' blocks")
    sch.add_argument("--asym", action="store_true", help="asymmetric integer quantization")
    sch.add_argument("--data_type", "--dtype", help="int, mx_fp, nv_fp, fp, ... (a bit suffix like mx_fp4 sets bits)")
    sch.add_argument("--act_bits", type=int)
    lay = p.add_argument_group("layers")
    lay.add_argument("--layer_config", help="per-layer schemes as (relaxed) JSON or a .json file, "
                                            "e.g. '{k_proj:{bits:8}}'")
    lay.add_argument("--ignore_layers", "--fp_layers", help="comma list of name patterns kept in 16-bit")
    lay.add_argument("--quant_lm_head", action="store_true", help="quantize lm_head too (auto_round/fake/mlx/gguf)")
    tun = p.add_argument_group("tuning")
    tun.add_argument("--lr", type=float)
    tun.add_argument("--minmax_lr", type=float)
    tun.add_argument("--batch_size", "--bs", type=int)
    tun.add_argument("--gradient_accumulate_steps", type=int)
    tun.add_argument("--nblocks", type=int, help="tune this many consecutive blocks jointly (default 1)")
    tun.add_argument("--disable_minmax_tuning", action="store_true", default=None, help="keep the RTN ranges")
    tun.add_argument("--start_from_rtn", action="store_true", default=None,
                     help="tune from plain RTN scales instead of the optimized-RTN ones (sym int)")
    tun.add_argument("--disable_quanted_input", action="store_true", default=None,
                     help="feed each block the full-precision chain instead of the quantized one")
    tun.add_argument("--not_use_best_mse", action="store_true", default=None,
                     help="keep the last step instead of the best one")
    tun.add_argument("--dynamic_max_gap", type=int, help="stop a block after N steps without improvement")
    tun.add_argument("--disable_amp", action="store_true", default=None,
                     help="no bf16 autocast: SignRound steps on CUDA, opt-RTN block passes on CUDA and on "
                     "CPUs with AMX/AVX512-BF16")
    tun.add_argument("--deterministic", action="store_true", default=None, help="deterministic torch algorithms")
    tun.add_argument("--dataset", help="calibration data: pile-10k, wiki, austen, pydoc or a local file")
    tun.add_argument("--algorithm", help="signround (tuning), opt-rtn, rtn, awq (AWQ + RTN) or awq,auto_round "
                                         "(AWQ + tuning); sets --iters accordingly")
    p.set_defaults(awq=None)  # set by --algorithm awq
    tun.add_argument("--adam", "--enable_adam", action="store_true", default=None, help="Adam instead of sign-SGD")
    tun.add_argument("--disable_opt_rtn", action="store_true", default=None,
                     help="plain RTN when --iters 0; with --iters > 0 SignRound starts from plain RTN (as in the reference)")
    tun.add_argument("--seed", type=int)
    tun.add_argument("--e2e_steps", type=int, help="after the block pass, tune the scales (codes kept) for N steps "
                                                   "on KL to the 16-bit model's next-token distribution (default 0)")
    tun.add_argument("--e2e", action="store_true", default=None,
                     help="the end-to-end stage with its default number of steps (see --e2e_steps)")
    tun.add_argument("--e2e_lr", type=float, help="end-to-end stage: relative scale change per Adam step")
    tun.add_argument("--rotation", help="Hadamard rotation before quantizing: hadamard, random, block, block:64 "
                                        "(per-linear, online), r1, r1r2 (QuaRot, folded), r1r2r4; only folded ones "
                                        "export (no consumer re-inserts online rotations)")
    mem = p.add_argument_group("device and memory")
    mem.add_argument("--device_map", "--device",
                     help="'cpu', '0', 'auto' (every GPU), '0,1' (one block's layers spread over GPUs 0 and 1) or a "
                          "layer->device dict like '{mlp.down_proj:1}' (--device: the reference's spelling)")
    mem.add_argument("--low_gpu_mem_usage", action="store_true", default=None)
    mem.add_argument("--enable_torch_compile", action="store_true", default=None)
    mix = p.add_argument_group("mixed bits and model-free")
    mix.add_argument("--avg_bits", "--target_bits", type=float, help="AutoScheme: target average bits")
    mix.add_argument("--options", help="AutoScheme: comma list of candidate schemes, the first one the default")
    mix.add_argument("--shared_layers", help="AutoScheme: groups of layer names/patterns that share one option per "
                                            "block, as (relaxed) JSON, e.g. '[[q_proj,k_proj,v_proj],[gate_proj,up_proj]]'")
    mix.add_argument("--ignore_scale_zp_bits", action="store_true", default=None,
                     help="AutoScheme: budget the code bits only (scales and zero points not counted)")
    mix.add_argument("--model_free", action="store_true", default=None, help="RTN straight from the files")
    mix.add_argument("--model_free_workers", type=int, default=None,
                     help="with --model_free: worker processes quantizing the shards in parallel (default 1)")
    mix.add_argument("--disable_model_free", action="store_true", default=None,
                     help="load the model even for plain RTN of a local directory into auto_round (which otherwise "
                          "runs model-free, same bytes)")
    ev = p.add_argument_group("evaluation after quantizing")
    ev.add_argument("--eval", action="store_true", help="print perplexity, KL and top-1 against the source model")
    ev.add_argument("--tasks", help="comma list of lm-eval tasks to run on the saved model")
    ev.add_argument("--eval_bs", default="auto")
    ev.add_argument("--limit", type=float)
    ev.add_argument("--num_fewshot", type=int)
    ev.add_argument("--include_path", help="folder of offline lm-eval task YAML files")
    add_diffusion_flags(p)
    return p


def _apply_recipe(args: argparse.Namespace) -> str:
    """Fill the tuning flags the user left unset from the recipe table of ar-algos; returns the line that says the
    effective values and which ones the user's flags set."""
    from ar_algos.config import RECIPES

    shown = []
    for key, value in RECIPES[args.recipe].items():
        given = getattr(args, key, None) is not None
        if not given:
            setattr(args, key, value)
        shown.append(f"{key} {getattr(args, key)}{f' (--{key})' if given else ''}")
    return f"recipe {args.recipe}: " + ", ".join(shown)


def _clamp_batch(args: argparse.Namespace) -> str | None:
    """--batch_size larger than --nsamples becomes --nsamples (a batch cannot hold more samples than there are);
    the line saying so, or None."""
    if args.iters == 0 and args.disable_opt_rtn or args.batch_size <= args.nsamples:
        return None
    asked, args.batch_size = args.batch_size, args.nsamples
    return f"--batch_size {asked} > --nsamples {args.nsamples}: using --batch_size {args.nsamples}"


def _formats(args: argparse.Namespace) -> list[str]:
    formats = comma_list(args.format or "auto_round")
    if not formats:
        raise UsageError("--format: give at least one format")
    for fmt in formats:
        if not FORMATS.knows(fmt) and not FORMATS.knows(fmt.split(":")[0]):
            raise UsageError(f"--format {fmt!r} is not a known format; one of {', '.join(FORMATS.known_names())}")
    return formats


def check_gguf_mix(args: argparse.Namespace, formats: list[str]) -> None:
    """Refuse, before any loading, a GGUF k-quant (gguf:q4_k_m) next to formats that cannot hold its scheme: one run
    has one quantization, so the advice is the two runs that each succeed."""
    gguf = [f for f in formats if f.lower().startswith("gguf:")]
    if not gguf:
        return
    try:
        mix = parse_scheme("GGUF:" + gguf[0].split(":", 1)[1])
    except ArError as exc:
        raise UsageError(f"--format {gguf[0]}: {exc}") from None
    others = [f for f in formats if f.split(":")[0].lower() != "gguf" and FORMATS.is_available(f)
              and not FORMATS.get(f).supports(mix)]
    if others:
        scheme_flags = " ".join(f"--{n}" for n in SCHEME_FLAGS if getattr(args, n, None) not in (None, False)) or "--scheme"
        kept = [f for f in formats if f not in others]
        raise UsageError(f"--format {','.join(formats)} mixes the GGUF k-quant {gguf[0]} with {', '.join(others)}, "
                         f"which cannot hold its scheme; one run makes one quantization, so run ar quantize twice: "
                         f"--format {','.join(others)} (with your {scheme_flags}), then --format {','.join(kept)} "
                         f"without scheme flags (the same --output_dir gives each run its own folder)")


def check_rotation(args: argparse.Namespace, formats: list[str]) -> None:
    """Refuse, before any loading, a --rotation that no requested format can hold (ar_algos.rotation.check_format)."""
    if args.rotation is None or args.model_free:  # model-free mode refuses --rotation itself
        return
    from ar_algos.rotation.spec import check_format, parse_rotation

    spec = parse_rotation(args.rotation)
    for fmt in formats:
        check_format(spec, fmt)


def build_scheme(args: argparse.Namespace, formats: list[str]) -> QuantScheme:
    """The default scheme from --scheme and its overrides; a GGUF format without --scheme picks its GGUF preset."""
    gguf = [f for f in formats if f.lower().startswith("gguf:")]
    scheme = args.scheme
    if gguf and scheme is None:
        scheme = "GGUF:" + gguf[0].split(":", 1)[1]
    try:
        s = parse_scheme(scheme or "W4A16", bits=args.bits, group_size=args.group_size,
                         sym=False if args.asym else None, data_type=args.data_type, act_bits=args.act_bits)
    except ArError as exc:
        raise UsageError(f"invalid scheme flags: {exc}") from None
    for fmt in gguf:
        if s.gguf is None or s.gguf != fmt.split(":", 1)[1].lower():
            raise UsageError(f"--format {fmt} contradicts --scheme {scheme} (scheme {s.gguf or s.data_type}); "
                             f"drop --scheme or use --scheme GGUF:{fmt.split(':', 1)[1].upper()}")
    return s


def route_algorithm(args: argparse.Namespace) -> None:
    """Turn --algorithm into the --iters / --disable_opt_rtn it means; contradictions and unknown names are errors."""
    names = [n.replace("_", "-").lower() for n in comma_list(args.algorithm or "")]
    if not names:
        return
    if "awq" in names:  # AWQ runs first, then plain RTN (alone) or the tuning named beside it
        names = [n for n in names if n != "awq"] or ["rtn"]
        args.awq = True
    known = sorted(set(ALGORITHMS.known_names()) | set(ALGORITHM_ROUTES))
    for name in names:
        if name not in known:
            raise UsageError(f"--algorithm {name!r} is unknown; one of {', '.join(known)}")
    if len(names) > 1 or names[0] not in ALGORITHM_ROUTES:
        raise UsageError(f"--algorithm {args.algorithm} is not available yet in ar quantize; available: "
                         f"{', '.join(ALGORITHM_ROUTES)}, each alone or after 'awq,'; awq alone is AWQ + RTN")
    iters, no_opt = ALGORITHM_ROUTES[names[0]]
    if iters is None:
        if args.iters == 0 or args.recipe in ("rtn", "opt-rtn"):
            raise UsageError(f"--algorithm {args.algorithm} tunes and contradicts "
                             f"{'--iters 0' if args.iters == 0 else '--recipe ' + args.recipe}")
        return
    if args.iters:
        raise UsageError(f"--algorithm {args.algorithm} does not tune and contradicts --iters {args.iters}")
    if args.disable_opt_rtn is not None and args.disable_opt_rtn != no_opt:
        raise UsageError(f"--algorithm {args.algorithm} contradicts --disable_opt_rtn")
    args.iters, args.disable_opt_rtn = iters, no_opt


def check_flags(args: argparse.Namespace, formats: list[str], user_set: set[str]) -> None:
    """Reject contradictory flag combinations before any work starts (`user_set`: flags given on the command line)."""
    if args.iters == 0:
        for name in TUNING_ONLY:
            if name in user_set:
                raise UsageError(f"--{name} has no effect with --iters 0 (RTN, recipe {args.recipe}): drop it or "
                                 "set --iters > 0")
    if args.e2e and args.e2e_steps == 0:
        raise UsageError("--e2e asks for the end-to-end stage and --e2e_steps 0 turns it off: drop one")
    if args.quant_lm_head:
        bad = [f for f in formats if not f.lower().startswith(LM_HEAD_FORMATS)]
        if bad:
            raise UsageError(f"--quant_lm_head is not supported by --format {bad[0]}; "
                             f"use one of {', '.join(LM_HEAD_FORMATS)}")
    if args.limit is not None and not args.tasks:
        raise UsageError("--limit only applies with --tasks")
    if args.model_free_workers is not None:
        raise UsageError("--model_free_workers only applies with --model_free")


def autoround_kwargs(args: argparse.Namespace, scheme: QuantScheme, api, knobs: set[str]) -> dict:
    """Keyword arguments for `api` (AutoRound) from the flags that are set.

    `knobs` are the tuning keywords `api` takes through **kwargs; a flag that is neither a named parameter nor a
    knob is "not available yet" (an error, never silently dropped).
    """
    kw: dict = {"scheme": scheme}
    if args.layer_config:
        kw["layer_config"] = relaxed_json(args.layer_config, "--layer_config")
    if args.ignore_layers:
        kw["ignore_layers"] = args.ignore_layers
    if args.quant_lm_head:
        kw["quant_lm_head"] = True
    if args.trust_remote_code:
        kw["trust_remote_code"] = True
    if args.resume is not None:
        kw["resume"] = args.resume
    for flag, key in PASS_THROUGH.items():
        value = getattr(args, flag)
        if value is not None:
            kw[key] = value
    kw.update({key: False for flag, key in SWITCHED_OFF.items() if getattr(args, flag)})
    if args.e2e and args.e2e_steps is None:
        from ar_algos.e2e import DEFAULT_STEPS

        kw["e2e_steps"] = DEFAULT_STEPS
    if args.device_map is not None:
        kw.update(_device_kwargs(args.device_map))
    accepted = set(inspect.signature(api).parameters) | knobs
    flag_of = {v: k for k, v in {**PASS_THROUGH, **SWITCHED_OFF}.items()}
    for key in kw:
        if key not in accepted:
            raise UsageError(f"--{flag_of.get(key, key)} is not available yet (the quantization API has no "
                             f"{key!r} option)")
    return kw


def _device_kwargs(device_map: str) -> dict:
    """--device_map as AutoRound keywords: one device -> device= ('0' is GPU 0); several devices ('0,1'), 'auto'
    or a relaxed-JSON {layer: device} dict -> device_map=, checked here (UsageError before any work; a single
    device is checked by AutoRound)."""
    from ar_algos.placement import parse_device_map

    if device_map.lstrip().startswith("{"):
        value = relaxed_json(device_map, "--device_map")
        key = "device_map"
    else:
        key = "device_map" if "," in device_map or device_map == "auto" else "device"
        value = int(device_map) if device_map.isdigit() else device_map
    if key == "device_map":
        try:
            parse_device_map(value)
        except ArError as exc:
            raise UsageError(f"--device_map {device_map}: {exc}") from None
    return {key: value}


def _device(device_map: str) -> str | int:
    """The main device of --device_map (where the AutoScheme scoring pass runs)."""
    from ar_algos.placement import parse_device_map

    kw = _device_kwargs(device_map)
    return kw["device"] if "device" in kw else str(parse_device_map(kw["device_map"]).main)


def output_name(model: str, s: QuantScheme) -> str:
    """Folder name of a run: '<model>-w4g128', '<model>-mxfp-w4g32', '<model>-w8a8' (per channel),
    '<model>-fp-w8a16-pertensor' or '<model>-gguf'."""
    base = Path(model.rstrip("/")).name
    if s.gguf:
        return f"{base}-gguf"
    gs = "x".join(map(str, s.group_size)) if isinstance(s.group_size, tuple) else str(s.group_size)
    tail = f"g{gs}" if not isinstance(s.group_size, int) or s.group_size > 0 else f"a{s.act_bits}"
    tail += "-pertensor" if s.group_size == 0 else ""  # -1 (one group per channel) keeps the plain name
    prefix = "" if s.data_type == "int" else s.data_type.replace("_", "") + "-"
    return f"{base}-{prefix}w{s.bits}{tail}"


def _api(mllm: bool):
    """AutoRound (ar-algos) or AutoRoundMLLM (ar-mllm); "not available yet" when the package lacks it."""
    import importlib

    module, name = ("ar_mllm", "AutoRoundMLLM") if mllm else ("ar_algos", "AutoRound")
    api = getattr(importlib.import_module(module), name, None)
    if api is None:
        raise UsageError(f"{'--mllm' if mllm else 'ar quantize'} is not available yet: {module} has no {name} API")
    return api


def _search(args: argparse.Namespace):
    """The AutoScheme of --avg_bits/--options (None without them); its first option becomes the default scheme."""
    if args.avg_bits is None:
        return None
    search = make_search(args, _device(args.device_map) if args.device_map else None)
    args.scheme = search.options[0].scheme
    return search


def _run_name(args: argparse.Namespace, scheme: QuantScheme) -> str:
    """Output folder name: output_name(), or '<model>-avg<N>b' for an AutoScheme run."""
    if args.avg_bits is not None:
        return f"{Path(args.model.rstrip('/')).name}-avg{args.avg_bits:g}b"
    return output_name(args.model, scheme)


def _model_free(args: argparse.Namespace, formats: list[str], user_set: set[str]) -> list[Path]:
    """--model_free: RTN from the files, after an AutoScheme search when --avg_bits is given."""
    check_model_free(args, formats, user_set)
    check_autoscheme(args, user_set, mllm=False)
    search = _search(args)
    scheme = build_scheme(args, formats)
    layer_config = relaxed_json(args.layer_config, "--layer_config") if args.layer_config else None
    if search is not None:
        check_options(search.options)
        _, _, layer_config = search_layer_config(search, args, layer_config)
    out_dir = Path(args.output_dir) / _run_name(args, scheme)
    check_output_dir(out_dir, args.overwrite)
    return [run_model_free(args, model_path(args.model), scheme, formats[0], out_dir, layer_config)]


def _quantize(args: argparse.Namespace, formats: list[str], user_set: set[str]) -> list[Path]:
    """The regular path: AutoRound (or AutoRoundMLLM for --mllm and detected VLM configs) quantizes and saves."""
    route_algorithm(args)
    knobs_line = _apply_recipe(args)
    evidence = None if args.mllm else detect_vlm(args.model)
    mllm = args.mllm or evidence is not None
    check_autoscheme(args, user_set, mllm)
    search = _search(args)
    scheme = build_scheme(args, formats)
    check_flags(args, formats, user_set)
    clamped = _clamp_batch(args)
    print(knobs_line + (f"; {clamped}" if clamped else ""), flush=True)
    if evidence:
        print(f"{args.model} looks like a vision-language model ({evidence}): quantizing with AutoRoundMLLM")
    api = _api(mllm)
    from ar_algos import AutoRound
    from ar_algos.config import TuneConfig

    knobs = {f.name for f in dataclasses.fields(TuneConfig)}
    if mllm:  # AutoRoundMLLM hands its other keywords to AutoRound
        knobs |= set(inspect.signature(AutoRound).parameters)
    kwargs = autoround_kwargs(args, scheme, api, knobs)
    model = args.model
    out_dir = Path(args.output_dir) / _run_name(args, scheme)
    check_output_dir(out_dir, args.overwrite)  # before the AutoScheme search and the model load
    model_free = args.iters == 0 and args.disable_opt_rtn and not args.disable_model_free and search is None \
        and [f.lower() for f in formats] == ["auto_round"]  # checks itself, and needs no transformers here
    if not mllm and not model_free:  # layer patterns, formats and data against the model's config
        from ar_algos.preflight import check_before_loading

        check_before_loading(model, scheme, None if search else formats, kwargs.get("layer_config"),
                             args.ignore_layers, bool(args.quant_lm_head), args.dataset if search else None)
    if search is not None:
        model, kwargs["tokenizer"], kwargs["layer_config"] = search_layer_config(search, args,
                                                                                 kwargs.get("layer_config"))
    quantized, paths = api(model, **kwargs).quantize_and_save(str(out_dir), format=",".join(formats),
                                                              overwrite=args.overwrite,
                                                              unloadable="warn" if args.format is None else "error")
    if quantized is None:
        print(f"model-free mode: plain RTN of a local directory was read straight from the safetensors files of "
              f"{args.model}, without loading the model (same bytes; --disable_model_free loads it instead)")
    for path in paths:
        print(f"saved {path}: {saved_summary(path, args.trust_remote_code)}")
    return paths


def run(args: argparse.Namespace) -> int:
    """Validate every flag, then quantize, save, and optionally evaluate."""
    if (args.model is None) == (args.model_flag is None):
        raise UsageError("give the model once: as MODEL or as --model MODEL")
    args.model = args.model or args.model_flag
    user_set = {k for k, v in vars(args).items() if v is not None}
    formats = _formats(args)
    check_gguf_mix(args, formats)
    check_rotation(args, formats)
    if is_pipeline(args.model):  # a diffusers pipeline directory: its DiT is quantized (ar_mllm.diffusion)
        route_algorithm(args)
        scheme = build_scheme(args, formats)
        quantize_pipeline(args, formats, scheme, Path(args.output_dir) / output_name(args.model, scheme))
        return 0
    from ar_algos.distributed import is_main, torchrun_group

    with torchrun_group():  # under torchrun (WORLD_SIZE > 1) the ranks quantize together; rank 0 alone prints
        main = is_main()
        with nullcontext() if main else redirect_stdout(io.StringIO()):
            paths = _model_free(args, formats, user_set) if args.model_free else _quantize(args, formats, user_set)
    if (args.eval or args.tasks) and main:
        from .eval_cmd import evaluate_after_quantize

        evaluate_after_quantize(paths[-1], model_path(args.model), args)
    return 0
