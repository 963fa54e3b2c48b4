"""`AutoRound`: quantize a Hugging Face causal LM block by block (SignRound, opt-RTN or RTN) and save it."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ar_core.errors import ArError, field_error
from ar_core.export_request import build_request
from ar_core.io import atomic_output_dir, check_output_dir
from ar_core.presets import parse_scheme
from ar_core.qtensor import QuantizedTensor
from ar_core.registry import FORMATS

from .act_max import any_needs_act_max, needs_act_max
from .autoscheme import AutoScheme
from .blocks import find_blocks, find_linears, find_lm_head, get_module, select_blocks
from .capture import ready_samples
from .checkpoint import WorkDir, check_work_dir
from .config import make_config
from .consumer_check import check_consumers
from .distributed import active, broadcast, check_samples, is_main, on_main, open_work
from .driver import Job, block_groups, quantize_blocks
from .fingerprint import digest, model_digest, source_files_digest
from .moe import unfuse_experts
from .placement import check_layers, parse_device_map
from .plan import build_plan, layer_infos
from .preflight import check_before_loading, plan_notes
from .progress import Progress
from .rotation.spec import apply_rotation, check_format, needs_data, needs_online, parse_rotation
from .run_info import run_info
from .space_check import check_space
from .worklock import WorkLock

log = logging.getLogger("ar_algos")
MODEL_FREE_FORMAT = "auto_round"
# algorithm= values -> the knobs they set (AWQ + plain RTN, the reference's AWQ; AWQ + SignRound).
ALGORITHM_KNOBS = {"awq": dict(awq=True, iters=0, disable_opt_rtn=True), "awq,signround": dict(awq=True)}


def algorithm_knobs(algorithm: Any, iters: int | None, knobs: dict[str, Any]) -> dict[str, Any]:
    """`knobs` with those `algorithm` ("awq" or "awq,auto_round"; None: unchanged) sets; contradictions raise."""
    if algorithm is None:
        return dict(knobs, iters=iters)
    parts = algorithm.split(",") if isinstance(algorithm, str) else []
    names = sorted({"signround" if n in ("auto-round", "autoround") else n
                    for n in (p.strip().lower().replace("_", "-") for p in parts)})
    sets = ALGORITHM_KNOBS.get(",".join(names))
    if sets is None:
        raise field_error(ArError, "algorithm", algorithm, "None, 'awq' or 'awq,auto_round'")
    if "iters" in sets and iters not in (None, 0):
        raise field_error(ArError, "iters", iters, f"0 or None with algorithm={algorithm!r} (AWQ + RTN)")
    if "iters" not in sets and iters == 0:
        raise field_error(ArError, "iters", iters, f"None or > 0 with algorithm={algorithm!r} (AWQ + SignRound)")
    for name, value in sets.items():
        if name != "iters" and knobs.get(name) not in (None, value):
            raise field_error(ArError, name, knobs[name], f"{value!r} or None with algorithm={algorithm!r}")
    return {**knobs, "iters": iters, **sets}


def parse_formats(format: str | list[str]) -> list[str]:
    """'auto_round,auto_gptq' or a list -> the list of format names (empty names refused)."""
    names = format.split(",") if isinstance(format, str) else list(format) if isinstance(format, (list, tuple)) \
        else None
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise field_error(ArError, "format", format, "a format name or a comma-separated list, e.g. 'auto_round'")
    return [n.strip().lower() for n in names]


def gguf_mix_of(names: list[str]) -> tuple[list[str], str | None]:
    """Split 'gguf:q4_k_m' style names: (names with the plain 'gguf', the 'GGUF:Q4_K_M' preset or None)."""
    mixes = {n.split(":", 1)[1] for n in names if n.startswith("gguf:")}
    if len(mixes) > 1:
        raise field_error(ArError, "format", ",".join(names), "at most one gguf:<mix> per run")
    plain = [n.split(":", 1)[0] if n.startswith("gguf:") else n for n in names]
    return plain, f"GGUF:{mixes.pop().upper()}" if mixes else None


class AutoRound:
    """Quantize `model` (a model object or a name/path for `ar_algos.models.resolve_model`).

    scheme: a preset ("W4A16", "W2A16G32", "MXFP4", "GGUF:Q4_K_M", ...), a dict of scheme fields, a QuantScheme, or
    an `ar_algos.autoscheme.AutoScheme`, whose mixed-bit search then makes the layer_config (its first option is
    the default scheme; user layer_config / ignore_layers entries stay fixed; `autoscheme_report` has the result).
    bits/group_size/sym/data_type override it. layer_config / ignore_layers / quant_lm_head select per-layer
    schemes (ar_core.layer_config). dataset: anything `ar_algos.data.get_calibration_data` takes; samples: a list
    of ready model-input dicts (input_ids [1, L] plus any other key, e.g. pixel_values) used as they are instead.
    block_names (alias to_quant_block_names): the blocks to tune as one chain, e.g. "model.language_model.layers"
    (default: the decoder blocks found in the model).
    recipe: "default", "best", "light", "opt-rtn" or "rtn" (fills the knobs left as None). iters=0 gives opt-RTN
    (or plain RTN with disable_opt_rtn=True). algorithm="awq" runs AWQ (reference §8.2) then plain RTN;
    "awq,auto_round" AWQ then SignRound; the awq=True knob adds AWQ to any of them (awq_n_grid, awq_duo_scaling,
    awq_clip tune its search; see `ar_algos.awq.awq_block`). The SignRound knobs (lr, minmax_lr, nsamples, seqlen,
    batch_size, gradient_accumulate_steps, enable_minmax_tuning, enable_quanted_input, not_use_best_mse,
    dynamic_max_gap, enable_adam, amp, low_gpu_mem_usage, enable_torch_compile, seed, deterministic) follow the
    reference's meaning. start_from_opt_rtn (default True): SignRound starts from the optimized-RTN scales of
    sym int layers (imatrix-weighted search, then max_scale in [0, 2] multiplies them, like the reference's
    enable_alg_ext) instead of plain RTN; disable_opt_rtn=True with iters > 0 starts from plain RTN, as in the
    reference. A list of strings as `dataset` is used in its order (the reference's), not shuffled.
    device: where each block is processed (default CUDA when available); the model itself stays where it is.
    device_map: spreads the linears of the block being tuned over several devices instead: "0,1", a list of
    devices, "auto" (every GPU), or a dict {layer name (or its last parts, e.g. "mlp.down_proj"): device} (the
    rest of the block on `device`); see `ar_algos.placement`. nblocks: tune that many consecutive blocks jointly
    (loss on the output of the last one).
    rotation: None, 'hadamard', 'random' or a spec (`ar_algos.rotation.spec`): Hadamard rotations applied before
    quantizing; foldable ones (r1, r2) export to every format, those leaving online Hadamards are refused by save.
    e2e_steps (default 0: off): after the block pass, an end-to-end stage (`ar_algos.e2e`) keeps every int layer's
    codes and tunes its scales (and asym zero points) for that many Adam steps of batch_size samples so that the
    model's next-token distribution matches the 16-bit model's on the calibration tokens (e2e_lr: relative scale
    change per step; e2e_topk: teacher log-probabilities kept per token); `e2e_report` then sums it up.
    work_dir / resume: see `quantize`. Plain RTN of a local model directory runs in model-free mode in
    `quantize_and_save` (see there; disable_model_free=True opts out). trust_remote_code=True lets a model given by
    name run its own Python code (off by default). Bad values raise ArError here, before any work.
    """

    def __init__(self, model: nn.Module | str, tokenizer: Any = None, scheme: Any = "W4A16", bits: int | None = None,
                 group_size: Any = None, sym: bool | None = None, data_type: str | None = None,
                 layer_config: dict | None = None, ignore_layers: Any = None, quant_lm_head: bool = False,
                 dataset: Any = None, recipe: str | None = None, iters: int | None = None, device: Any = None,
                 device_map: Any = None,
                 work_dir: str | Path | None = None, resume: bool = True, verbose: bool = True,
                 block_names: Any = None, to_quant_block_names: Any = None, samples: list[dict] | None = None,
                 disable_model_free: bool = False, algorithm: str | None = None, trust_remote_code: bool = False,
                 rotation: Any = None,
                 **knobs: Any):
        self.cfg = make_config(recipe, **algorithm_knobs(algorithm, iters, knobs))
        self.search = scheme if isinstance(scheme, AutoScheme) else None
        self.rotation, self.rotation_config = parse_rotation(rotation), None
        if self.cfg.awq and needs_online(self.rotation):  # AWQ would scale activations before the online rotation
            raise field_error(ArError, "rotation", rotation, "None or a foldable rotation ('r1', 'r1r2') with AWQ")
        base = self.search.options[0].scheme if self.search else scheme
        self.scheme = parse_scheme(base, bits=bits, group_size=group_size, sym=sym, data_type=data_type)
        self.trust_remote_code = trust_remote_code
        for name, value in (("quant_lm_head", quant_lm_head), ("disable_model_free", disable_model_free),
                            ("trust_remote_code", trust_remote_code)):
            if not isinstance(value, bool):
                raise field_error(ArError, name, value, "True or False")
        if not isinstance(resume, bool):
            raise field_error(ArError, "resume", resume, "True (continue a matching run) or False (start over)")
        if block_names is not None and to_quant_block_names is not None:
            raise field_error(ArError, "to_quant_block_names", to_quant_block_names, "None when block_names is given "
                              "(they are the same option)")
        self.device_map = parse_device_map(device_map, device)
        self.device = self.device_map.main
        if self.cfg.awq and len(self.device_map.devices) > 1:
            raise field_error(ArError, "device_map", device_map, "one device with AWQ")
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.samples = ready_samples(samples) if samples is not None else None
        self.work_dir, self.resume, self.verbose = work_dir, resume, verbose
        self._layer_args = dict(layer_config=layer_config, ignore_layers=ignore_layers, quant_lm_head=quant_lm_head)
        self._block_arg = block_names if block_names is not None else to_quant_block_names
        self.records: dict[str, QuantizedTensor] | None = None
        self.autoscheme_report = None
        self.e2e_report: dict | None = None  # the end-to-end stage's summary (kl_before, kl_after, seconds, ...)
        self._work: WorkDir | None = None
        self._lock: WorkLock | None = None  # held by quantize_and_save from before the load until the work dir goes
        self.model: nn.Module | None = None
        self.model_free_dir = self._model_free_candidate(model, disable_model_free)
        if self.model_free_dir is None:
            self._check_before_loading(model)
            self._load(model)

    def _check_before_loading(self, model: Any) -> None:
        """The layer patterns (against the names of the model built on the meta device) and the calibration
        dataset, checked before the weights load (`ar_algos.preflight`)."""
        uses_data = self.samples is None and (self.cfg.calibrated or self.search is not None
                                              or needs_data(self.rotation))
        plain = self.search is None and self._block_arg is None
        check_before_loading(model if plain else None, self.scheme, dataset=self.dataset if uses_data else None,
                             **self._layer_args)

    def _model_free_candidate(self, model: Any, disable: bool) -> Path | None:
        """The local model directory when this run may go model-free (plain RTN, supported scheme, nothing that
        needs the loaded model: no tokenizer, samples, block_names or AutoScheme; safetensors weights)."""
        from .model_free import supported
        from .model_free.source import INDEX, SINGLE

        plain = not self.cfg.calibrated and self.search is None and self.rotation is None and supported(self.scheme)
        untouched = self.tokenizer is None and self.samples is None and self._block_arg is None
        if disable or not plain or not untouched or not isinstance(model, (str, os.PathLike)):
            return None
        path = Path(model).expanduser()
        readable = (path / "config.json").is_file() and any((path / f).is_file() for f in (SINGLE, INDEX))
        return path if readable else None

    def _load(self, model: Any) -> None:
        """Load the model (when given as a name/path), find its blocks, run the AutoScheme search, plan the layers."""
        if isinstance(model, (str, os.PathLike)):
            from .models import resolve_model

            model, loaded_tokenizer = resolve_model(model, trust_remote_code=self.trust_remote_code)
            self.tokenizer = self.tokenizer or loaded_tokenizer
        if not isinstance(model, nn.Module):
            raise field_error(ArError, "model", type(model).__name__, "a torch nn.Module or a model name/path")
        self.model = model.eval()
        unfuse_experts(self.model)
        self.block_names = find_blocks(model) if self._block_arg is None else select_blocks(model, self._block_arg)
        self.lm_head = find_lm_head(self.model, self.block_names)
        if self.device_map.layers:
            check_layers(self.device_map, [f"{b}.{n}" for b in self.block_names
                                           for n in find_linears(get_module(self.model, b))])
        no_data = self.dataset is None and self.tokenizer is None and self.samples is None
        if needs_data(self.rotation) and no_data:
            raise field_error(ArError, "tokenizer", None, "a tokenizer (rotation margin "
                              f"{self.rotation['margin']} picks layers on calibration text), or dataset= / samples=, "
                              "or a rotation without margin such as 'block'")
        if (self.cfg.calibrated or self.search is not None) and no_data:
            name = f"{'awq + ' * self.cfg.awq}{self.cfg.algorithm}"
            raise field_error(ArError, "tokenizer", None, f"a tokenizer (algorithm {name!r} "
                              f"{'with AutoScheme ' if self.search else ''}needs calibration text), or dataset= as "
                              "token-id samples, samples= as model inputs, or recipe='rtn'")
        if needs_act_max(self.scheme) and no_data:
            raise field_error(ArError, "tokenizer", None, "a tokenizer (the static activation scales of this scheme "
                              "are calibrated on text), or dataset= as token-id samples, or samples= as model inputs")
        if self.search is not None:
            self._layer_args["layer_config"] = self.search.search(self.model, self.tokenizer, samples=self.samples,
                                                                  dataset=self.dataset, **self._layer_args)
            self.autoscheme_report = self.search.report
        self.plan = self._plan(None)
        for note in plan_notes(layer_infos(self.model, self.block_names), self.plan) if self.verbose else ():
            log.warning(note)
        if self.rotation is not None and not needs_data(self.rotation):
            self._rotate(None)
            self.plan = self._plan(None)  # R1 unties a tied LM head

    def _rotate(self, samples: list[dict] | None) -> None:
        """Apply the rotation (after the plan: block mode follows its group sizes) and keep its rotation_config."""
        schemes = {n: s for n, s in self.plan.schemes().items() if s.is_quantized}
        self.rotation_config = apply_rotation(self.model, self.rotation, schemes, self.block_names, samples,
                                              self.cfg.batch_size)

    def _plan(self, format: str | None):
        return build_plan(self.model, self.block_names, self.lm_head, self.scheme, format=format, **self._layer_args)

    def _samples(self) -> list[dict] | None:
        if not self.cfg.calibrated and not needs_data(self.rotation) and not any_needs_act_max(self.plan.schemes()):
            return None
        if self.samples is not None:
            return self.samples
        from .data import get_calibration_data

        seqlen = self.cfg.seqlen
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(limit, int):
            seqlen = min(seqlen, limit)
        return get_calibration_data(self.tokenizer, self.dataset, nsamples=self.cfg.nsamples, seqlen=seqlen,
                                    seed=self.cfg.seed)

    def _fingerprint(self, samples: list[dict] | None) -> dict[str, str]:
        data = digest(*(x for s in samples for k in sorted(s) if isinstance(s[k], torch.Tensor)
                        for x in (k, s[k]))) if samples else "none"
        method, weights = model_digest(self.model)
        return {"model": weights, "model_hash": method, "model_files": source_files_digest(self._source_dir()),
                "plan": digest(self.plan.to_json()), "data": data, "knobs": digest(sorted(self.cfg.to_dict().items())),
                "rotation": digest(self.rotation)}

    def _checkpointed(self) -> bool:
        """Whether finished blocks are checkpointed: not for plain RTN (nothing to save time on) nor AWQ."""
        return self.cfg.calibrated and not self.cfg.awq

    def quantize(self, work_dir: str | Path | None = None) -> tuple[nn.Module, dict[str, QuantizedTensor]]:
        """Quantize every planned layer; returns (the model holding QDQ weights, layer name -> QuantizedTensor).

        With a work directory (`work_dir` here or in the constructor) every finished block is checkpointed; the
        same call after a crash continues from the next block (a different run refuses unless resume=False).
        AWQ runs are not checkpointed (the scales folded into the norms are not part of the block records), nor
        plain RTN (no calibration, nothing to save time on). The work directory is locked for the call.
        """
        if self.records is not None:
            return self.model, self.records
        if self.model is None:
            self._load(str(self.model_free_dir))
        samples = self._samples()
        if needs_data(self.rotation) and self.rotation_config is None:
            self._rotate(samples)
        schemes = {n: e.scheme for n, e in self.plan.entries.items() if e.scheme.is_quantized}
        check_samples(len(samples) if samples else 0)
        if active() and self.cfg.awq_clip:  # its token subsample would differ from one process's
            raise field_error(ArError, "awq_clip", True, "False when running distributed (torchrun)")
        if active() and self.cfg.e2e_steps:
            raise field_error(ArError, "e2e_steps", self.cfg.e2e_steps, "0 when running distributed (torchrun)")
        path = work_dir or self.work_dir
        fingerprint = self._fingerprint(samples)
        work = open_work(lambda: WorkDir(path, fingerprint, self.resume, self._lock)) \
            if path and self._checkpointed() else None
        self._work = work
        progress = Progress(len(block_groups(self.block_names, self.cfg.nblocks)), enabled=self.verbose and is_main())
        if work is not None:
            progress.note(f"checkpoints in {work.path} (resume fingerprint: "
                          f"{'every weight hashed' if work.fingerprint['model_hash'] == 'full' else 'weights sampled'}"
                          ", weight files by size, mtime and header)")
        job = Job(self.model, self.block_names, schemes, self.lm_head, samples, self.cfg, self.device,
                  self.device_map)
        deterministic = torch.are_deterministic_algorithms_enabled()
        if self.cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(self.cfg.deterministic or deterministic)
        try:
            teacher = self._teacher(samples, work)
            self.records = quantize_blocks(job, work, progress)
            if teacher is not None:
                self._distill(samples, teacher, work)
        finally:
            torch.use_deterministic_algorithms(deterministic)
            if work is not None and self._lock is None:
                work.release()
        return self.model, self.records

    def _teacher(self, samples: list[dict] | None, work: WorkDir | None) -> dict | None:
        """The 16-bit model's top-k next-token log-probabilities on the calibration samples, when the end-to-end
        stage runs (computed on `device` before any block is quantized, or read back from the work directory)."""
        if not self.cfg.e2e_steps:
            return None
        from .e2e import load_or_make_teacher, on_device

        with on_device(self.model, self.device):
            return load_or_make_teacher(self.model, samples, self.cfg, self.device, work)

    def _distill(self, samples: list[dict], teacher: dict, work: WorkDir | None) -> None:
        """The end-to-end stage (`ar_algos.e2e`): tune the records' scales on `device`; `e2e_report` sums it up."""
        from .e2e import distill, on_device

        progress = Progress(self.cfg.e2e_steps, enabled=self.verbose and is_main(), label="e2e step")
        with on_device(self.model, self.device):
            self.records, self.e2e_report = distill(self.model, self.block_names, self.records, samples, teacher,
                                                    self.cfg, self.device, work, progress)

    def _source_dir(self) -> Path | None:
        """The directory the model was loaded from (for side files such as generation_config.json), if any."""
        path = getattr(getattr(self.model, "config", None), "_name_or_path", None)
        return Path(path) if path and Path(path).is_dir() else None

    def _formats(self, format: str | list[str], unloadable: str = "warn") -> list[Any]:
        """Look the formats up and let each check the plan's schemes (raises ArError before any quantization), and
        whether its consumers load this model's layer shapes (ar_algos.consumer_check, `unloadable`)."""
        requested, mix = gguf_mix_of(parse_formats(format))
        if mix is not None and self.scheme != parse_scheme(mix):
            asked = self.scheme.gguf or "not GGUF"
            raise field_error(ArError, "format", format, f"a format matching the scheme ({asked}); use "
                              f"scheme={mix!r} or format='gguf'")
        formats = [FORMATS.get(name) for name in requested]
        names = [fmt.name for fmt in formats]
        if len(set(names)) < len(names):
            raise field_error(ArError, "format", ",".join(requested), "each format once (they write into "
                              f"output_dir/<format>: {', '.join(FORMATS.key(n) for n in names)})")
        schemes = {n: s for n, s in self.plan.schemes().items() if s.is_quantized}
        widths = {n: m.in_features for n, m in self.model.named_modules() if n in schemes and hasattr(m, "in_features")}
        for fmt in formats:
            fmt.check(schemes)
            check_format(self.rotation, fmt.name)
            check_consumers(fmt, schemes, widths, unloadable)
        return formats

    def save_quantized(self, output_dir: str | Path, format: str | list[str] = "auto_round",
                       inplace: bool = True, processor: Any = None, overwrite: bool = False,
                       unloadable: str = "warn") -> list[Path]:
        """Write the quantized model in each format (one format: `output_dir`; several: `output_dir/<format>`).

        `unloadable`: "warn" (default) or "error" when a format's consumers cannot run some layer's shape (a group
        size that does not divide in_features); "error" refuses only when no consumer at all could load it.

        `processor` (a multimodal model's processor) is saved with the tokenizer by the formats that hold one.
        `output_dir` appears complete or not at all; an existing one is an error unless `overwrite`.
        """
        if self.records is None:
            raise ArError("save_quantized() needs quantize() first (or call quantize_and_save)")
        formats = self._formats(format, unloadable)
        model = self.model if inplace else copy.deepcopy(self.model)
        extra = {}  # a foldable rotation lives in the weights alone (check_format refused the others)
        if self.scheme.gguf and any(fmt.name == "gguf" for fmt in formats):
            extra["gguf"] = self.scheme.gguf  # the mix asked for, even where every tensor fell back to another type
        info = run_info(self.cfg, self.dataset if self.samples is None else None, **extra)
        order = [n for n, _ in model.named_modules() if n in self.records]
        records = {**{n: self.records[n] for n in order}, **self.records}  # model order (what configs list)
        request = build_request(records, info)  # decided once for every format
        save = dict(tokenizer=self.tokenizer, processor=processor, run_info=info, source_dir=self._source_dir(),
                    request=request)
        if len(formats) == 1:
            return [formats[0].save(Path(output_dir), model, self.records, overwrite=overwrite, **save)]
        folders = [FORMATS.key(fmt.name) for fmt in formats]  # the registry key: no ':' (auto_round:mlx)
        with atomic_output_dir(output_dir, overwrite=overwrite) as tmp:  # all formats, or none
            for fmt, folder in zip(formats, folders):
                fmt.save(tmp / folder, model, self.records, **save)
        return [Path(output_dir) / folder for folder in folders]

    def _run_model_free(self, output_dir: str | Path, names: list[str], overwrite: bool) -> Path | None:
        """Quantize straight from the files when this run can (see `quantize_and_save`); None when it cannot."""
        from .model_free import fits_model_free, quantize_model_free

        if self.model_free_dir is None or self.model is not None or names != [MODEL_FREE_FORMAT]:
            return None
        args = dict(scheme=self.scheme, format=MODEL_FREE_FORMAT, **self._layer_args)
        if not fits_model_free(self.model_free_dir, **args):
            return None
        return quantize_model_free(self.model_free_dir, output_dir, overwrite=overwrite, **args).path

    def quantize_and_save(self, output_dir: str | Path = "tmp_autoround", format: str | list[str] = "auto_round",
                          overwrite: bool = False, unloadable: str = "warn") -> tuple[nn.Module | None, list[Path]]:
        """Check the formats and `output_dir` (an existing one is an error unless `overwrite`), quantize
        (checkpointing to `<output_dir>.work` unless work_dir is set), save, clean up. `unloadable`: see
        `save_quantized` (checked before quantizing).

        Model-free routing (the reference's): plain RTN (iters=0, disable_opt_rtn=True) of a local model directory
        into the auto_round format, with every layer's scheme one that model-free mode supports, is done straight
        from the safetensors files (`ar_algos.model_free`, the same bytes) without loading the model; the returned
        model is then None.
        """
        names = parse_formats(format)
        mix = gguf_mix_of(names)[1]
        if mix is not None and self.records is None and self.scheme.gguf is None and self.search is None:
            self.scheme = parse_scheme(mix)  # the reference's format="gguf:q4_k_m" picks the GGUF scheme
        check_output_dir(output_dir, overwrite)
        path = self._run_model_free(output_dir, names, overwrite)
        if path is not None:
            return None, [path]
        work_dir = self.work_dir or Path(str(Path(output_dir)).rstrip("/") + ".work")
        if self.records is None and self._checkpointed() and is_main():  # rank 0 holds the lock for every rank
            check_work_dir(work_dir)
            self._lock = WorkLock.acquire(work_dir)  # a second run into the same folder stops here, before loading
        try:
            if self.model is None:  # the formats are known now: check them before the weights load
                check_before_loading(self.model_free_dir, self.scheme, names, **self._layer_args)
                self._load(str(self.model_free_dir))
            if self.records is None:
                self.plan = self._plan(names[0])
                schemes = {n: s for n, s in self.plan.schemes().items() if s.is_quantized}
                check_space(self.model, schemes, output_dir, len(names), work_dir if self._lock else None)
            self._formats(names, unloadable)
            self.quantize(work_dir)
            paths = broadcast(on_main(lambda: self.save_quantized(output_dir, names, overwrite=overwrite,
                                                                  unloadable=unloadable)))  # the others wait
            if self._work is not None:
                on_main(self._work.remove)
        finally:
            if self._lock is not None:
                self._lock.release(cleanup=self._work is None)
                self._lock = None
        return self.model, paths
