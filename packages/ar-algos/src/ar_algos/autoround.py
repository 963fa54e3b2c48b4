"""`AutoRound`: quantize a Hugging Face causal LM block by block (SignRound, opt-RTN or RTN) and save it."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ar_core.errors import ArError, field_error
from ar_core.presets import parse_scheme
from ar_core.qtensor import QuantizedTensor
from ar_core.registry import FORMATS

from .blocks import find_blocks, find_lm_head
from .checkpoint import WorkDir, digest, model_digest
from .config import make_config
from .driver import Job, quantize_blocks
from .moe import unfuse_experts
from .plan import build_plan
from .progress import Progress


def _device(device: Any) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    except (RuntimeError, TypeError):
        raise field_error(ArError, "device", device, "None/'auto', 'cpu', 'cuda', 'cuda:N' or a GPU index")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise field_error(ArError, "device", device, "'cpu' (no CUDA device is available)")
    return dev


def parse_formats(format: str | list[str]) -> list[str]:
    """'auto_round,auto_gptq' or a list -> the list of format names (empty names refused)."""
    names = format.split(",") if isinstance(format, str) else list(format) if isinstance(format, (list, tuple)) \
        else None
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise field_error(ArError, "format", format, "a format name or a comma-separated list, e.g. 'auto_round'")
    return [n.strip().lower() for n in names]


class AutoRound:
    """Quantize `model` (a model object or a name/path for `ar_algos.models.resolve_model`).

    scheme: a preset ("W4A16", "W2A16G32", "MXFP4", "GGUF:Q4_K_M", ...), a dict of scheme fields or a QuantScheme;
    bits/group_size/sym/data_type override it. layer_config / ignore_layers / quant_lm_head select per-layer
    schemes (ar_core.layer_config). dataset: anything `ar_algos.data.get_calibration_data` takes.
    recipe: "default", "best", "light", "opt-rtn" or "rtn" (fills the knobs left as None). iters=0 gives opt-RTN
    (or plain RTN with disable_opt_rtn=True). The SignRound knobs (lr, minmax_lr, nsamples, seqlen, batch_size,
    gradient_accumulate_steps, enable_minmax_tuning, enable_quanted_input, not_use_best_mse, dynamic_max_gap,
    enable_adam, amp, low_gpu_mem_usage, enable_torch_compile, seed, deterministic) follow the reference's meaning.
    device: where each block is processed (default CUDA when available); the model itself stays where it is.
    work_dir / resume: see `quantize`. Bad values raise ArError here, before any work.
    """

    def __init__(self, model: nn.Module | str, tokenizer: Any = None, scheme: Any = "W4A16", bits: int | None = None,
                 group_size: Any = None, sym: bool | None = None, data_type: str | None = None,
                 layer_config: dict | None = None, ignore_layers: Any = None, quant_lm_head: bool = False,
                 dataset: Any = None, recipe: str | None = None, iters: int | None = None, device: Any = None,
                 work_dir: str | Path | None = None, resume: bool = True, verbose: bool = True, **knobs: Any):
        self.cfg = make_config(recipe, iters=iters, **knobs)
        self.scheme = parse_scheme(scheme, bits=bits, group_size=group_size, sym=sym, data_type=data_type)
        if not isinstance(quant_lm_head, bool):
            raise field_error(ArError, "quant_lm_head", quant_lm_head, "True or False")
        if not isinstance(resume, bool):
            raise field_error(ArError, "resume", resume, "True (continue a matching run) or False (start over)")
        self.device = _device(device)
        if isinstance(model, (str, Path)):
            from .models import resolve_model

            model, loaded_tokenizer = resolve_model(model)
            tokenizer = tokenizer or loaded_tokenizer
        if not isinstance(model, nn.Module):
            raise field_error(ArError, "model", type(model).__name__, "a torch nn.Module or a model name/path")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.work_dir, self.resume, self.verbose = work_dir, resume, verbose
        self._layer_args = dict(layer_config=layer_config, ignore_layers=ignore_layers, quant_lm_head=quant_lm_head)
        unfuse_experts(self.model)
        self.block_names = find_blocks(self.model)
        self.lm_head = find_lm_head(self.model, self.block_names)
        self.plan = self._plan(None)
        if self.cfg.algorithm != "rtn" and dataset is None and tokenizer is None:
            raise field_error(ArError, "tokenizer", None, f"a tokenizer (algorithm {self.cfg.algorithm!r} needs "
                              "calibration text), or dataset= as token-id samples, or recipe='rtn'")
        self.records: dict[str, QuantizedTensor] | None = None
        self._work: WorkDir | None = None

    def _plan(self, format: str | None):
        return build_plan(self.model, self.block_names, self.lm_head, self.scheme, format=format, **self._layer_args)

    def _samples(self) -> list[dict] | None:
        if self.cfg.algorithm == "rtn":
            return None
        from .data import get_calibration_data

        seqlen = self.cfg.seqlen
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(limit, int):
            seqlen = min(seqlen, limit)
        return get_calibration_data(self.tokenizer, self.dataset, nsamples=self.cfg.nsamples, seqlen=seqlen,
                                    seed=self.cfg.seed)

    def _fingerprint(self, samples: list[dict] | None) -> dict[str, str]:
        data = digest(*(s["input_ids"] for s in samples)) if samples else "none"
        return {"model": model_digest(self.model), "plan": digest(self.plan.to_json()), "data": data,
                "knobs": digest(sorted(self.cfg.to_dict().items()))}

    def quantize(self, work_dir: str | Path | None = None) -> tuple[nn.Module, dict[str, QuantizedTensor]]:
        """Quantize every planned layer; returns (the model holding QDQ weights, layer name -> QuantizedTensor).

        With a work directory (`work_dir` here or in the constructor) every finished block is checkpointed; the
        same call after a crash continues from the next block (a different run refuses unless resume=False).
        """
        if self.records is not None:
            return self.model, self.records
        samples = self._samples()
        schemes = {n: e.scheme for n, e in self.plan.entries.items() if e.scheme.is_quantized}
        path = work_dir or self.work_dir
        work = WorkDir(path, self._fingerprint(samples), self.resume) if path else None
        self._work = work
        progress = Progress(len(self.block_names), enabled=self.verbose)
        job = Job(self.model, self.block_names, schemes, self.lm_head, samples, self.cfg, self.device)
        deterministic = torch.are_deterministic_algorithms_enabled()
        if self.cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(self.cfg.deterministic or deterministic)
        try:
            self.records = quantize_blocks(job, work, progress)
        finally:
            torch.use_deterministic_algorithms(deterministic)
        return self.model, self.records

    def _source_dir(self) -> Path | None:
        """The directory the model was loaded from (for side files such as generation_config.json), if any."""
        path = getattr(getattr(self.model, "config", None), "_name_or_path", None)
        return Path(path) if path and Path(path).is_dir() else None

    def _formats(self, format: str | list[str]) -> list[Any]:
        """Look the formats up and let each check the plan's schemes (raises ArError before any quantization)."""
        formats = [FORMATS.get(name) for name in parse_formats(format)]
        schemes = {n: s for n, s in self.plan.schemes().items() if s.is_quantized}
        for fmt in formats:
            fmt.check(schemes)
        return formats

    def save_quantized(self, output_dir: str | Path, format: str | list[str] = "auto_round",
                       inplace: bool = True) -> list[Path]:
        """Write the quantized model in each format (one format: `output_dir`; several: `output_dir/<format>`)."""
        if self.records is None:
            raise ArError("save_quantized() needs quantize() first (or call quantize_and_save)")
        formats = self._formats(format)
        model = self.model if inplace else copy.deepcopy(self.model)
        run_info = {"algorithm": self.cfg.algorithm, "knobs": self.cfg.to_dict(), "plan": self.plan.to_json()}
        paths = []
        for fmt in formats:
            target = Path(output_dir) if len(formats) == 1 else Path(output_dir) / fmt.name
            paths.append(fmt.save(target, model, self.records, tokenizer=self.tokenizer, run_info=run_info,
                                  source_dir=self._source_dir(), overwrite=True))
        return paths

    def quantize_and_save(self, output_dir: str | Path = "tmp_autoround",
                          format: str | list[str] = "auto_round") -> tuple[nn.Module, list[Path]]:
        """Check the formats, quantize (checkpointing to `<output_dir>.work` unless work_dir is set), save, clean up."""
        names = parse_formats(format)
        if self.records is None:
            self.plan = self._plan(names[0])
        self._formats(names)
        work_dir = self.work_dir or Path(str(Path(output_dir)).rstrip("/") + ".work")
        self.quantize(work_dir)
        paths = self.save_quantized(output_dir, names)
        if self._work is not None:
            self._work.remove()
        return self.model, paths
