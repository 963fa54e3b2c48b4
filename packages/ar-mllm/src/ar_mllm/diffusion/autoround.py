"""`AutoRoundDiffusion`: quantize the DiT denoiser of a diffusers pipeline block by block with ar_algos' AutoRound.

Only the transformer's blocks are quantized (FLUX double- and single-stream blocks, SD3 joint blocks); the text
encoders, the VAE and the transformer's embedders and output projection stay 16-bit. SignRound and opt-RTN tune
on the first block's inputs captured over the denoising steps of a few prompts (`ar_mllm.diffusion.capture`);
plain RTN needs no data. Resume, progress and block checkpoints are ar_algos' (work_dir / resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ar_algos import AutoRound
from ar_algos.config import make_config
from ar_algos.autoround import parse_formats
from ar_core.errors import ArError, field_error
from ar_core.io import check_output_dir

from .blocks import BlockChain
from .capture import call_kwargs, capture_samples
from .pipeline import check_pipeline, is_pipeline, is_pipeline_dir, load_pipeline_dir
from .prompts import load_prompts
from .save import FORMATS_ALLOWED, save_pipeline

DEFAULT_PROMPTS = 16  # captions used when nsamples is not given (each gives num_inference_steps samples)


class AutoRoundDiffusion:
    """Quantize the transformer of a diffusers pipeline (object or local pipeline directory).

    prompts: captions (see `ar_mllm.diffusion.prompts.load_prompts`; default: the embedded ones); nsamples: how
    many of them (default 16); num_inference_steps (default 8), guidance_scale (7.5), height / width / 
    max_sequence_length (None: the pipeline's defaults) and seed are the calibration run's pipeline knobs, as in the
    reference. scheme, recipe, iters, work_dir, resume and the other keywords go to ar_algos.AutoRound. Bad values
    raise ArError here; a pipeline directory is checked before its weights load.
    """

    def __init__(self, pipe: Any, scheme: Any = "W4A16", prompts: Any = None, nsamples: int | None = None,
                 num_inference_steps: int = 8, guidance_scale: float = 7.5, height: int | None = None,
                 width: int | None = None, max_sequence_length: int | None = None, seed: int = 42,
                 recipe: str | None = None, iters: int | None = None, dtype: Any = None, **kwargs: Any):
        self.call = call_kwargs(num_inference_steps, guidance_scale, height, width, max_sequence_length, seed)
        self.cfg = make_config(recipe, iters=iters, seed=seed, **{k: v for k, v in kwargs.items() if k in _KNOBS})
        if nsamples is not None and (not isinstance(nsamples, int) or isinstance(nsamples, bool) or nsamples < 1):
            raise field_error(ArError, "nsamples", nsamples, "a positive number of prompts, or None")
        self.prompts = load_prompts(prompts, nsamples or DEFAULT_PROMPTS) if self.cfg.calibrated else []
        self.seed = seed
        if isinstance(pipe, (str, Path)):
            if not is_pipeline_dir(pipe):
                raise field_error(ArError, "pipeline", str(pipe), "a diffusers pipeline directory (with "
                                  "model_index.json) or a pipeline object")
            pipe = load_pipeline_dir(pipe, dtype)
        if not is_pipeline(pipe):
            raise field_error(ArError, "pipeline", type(pipe).__name__, "a diffusers pipeline object or directory")
        check_pipeline(pipe)
        self.pipe = pipe
        self.chain = BlockChain(pipe.transformer)
        self.args = dict(scheme=scheme, recipe=recipe, iters=iters, seed=seed, **kwargs)
        self.autoround: AutoRound | None = None

    def _autoround(self) -> AutoRound:
        """The ar_algos AutoRound over the block chain (calibration samples captured on first use)."""
        if self.autoround is None:
            samples = None
            if self.cfg.calibrated:
                first = getattr(self.pipe.transformer, self.chain.lists[0])[0]
                samples = capture_samples(self.pipe, first, self.prompts, self.call, self.seed)
            self.autoround = AutoRound(self.chain, None, samples=samples, block_names=self.chain.block_names,
                                       nsamples=len(samples) if samples else None, **self.args)
        return self.autoround

    def quantize(self, work_dir: str | Path | None = None) -> tuple[nn.Module, dict]:
        """Quantize the transformer's blocks in place (QDQ weights); returns (pipeline, layer -> QuantizedTensor)."""
        _, records = self._autoround().quantize(work_dir)
        return self.pipe, records

    def save_quantized(self, output_dir: str | Path, format: str = "auto_round", overwrite: bool = False) -> Path:
        """Write the pipeline with its quantized transformer (see `ar_mllm.diffusion.save.save_pipeline`)."""
        ar = self._autoround()
        if ar.records is None:
            raise ArError("save_quantized() needs quantize() first (or call quantize_and_save)")
        return save_pipeline(self.pipe, output_dir, ar.records, _one_format(format), ar.cfg, overwrite=overwrite)

    def quantize_and_save(self, output_dir: str | Path, format: str = "auto_round",
                          overwrite: bool = False) -> tuple[Any, Path]:
        """Check the format and `output_dir`, quantize (checkpointing into `<output_dir>.work` unless work_dir is
        set; a rerun after a crash resumes there), save, and remove the work directory; returns (pipe, path)."""
        name = _one_format(format)
        check_output_dir(output_dir, overwrite)
        ar = self._autoround()
        work_dir = ar.work_dir or Path(str(Path(output_dir)).rstrip("/") + ".work")
        self.quantize(work_dir)
        path = save_pipeline(self.pipe, output_dir, ar.records, name, ar.cfg, overwrite=overwrite)
        if ar._work is not None:
            ar._work.remove()
        return self.pipe, path


_KNOBS = ("lr", "minmax_lr", "batch_size", "gradient_accumulate_steps", "enable_minmax_tuning",
          "enable_quanted_input", "not_use_best_mse", "dynamic_max_gap", "enable_adam", "amp", "low_gpu_mem_usage",
          "disable_opt_rtn", "start_from_opt_rtn", "nblocks", "deterministic")


def _one_format(format: Any) -> str:
    names = parse_formats(format)
    if len(names) != 1 or names[0] not in FORMATS_ALLOWED:
        raise field_error(ArError, "format", format, f"one of {', '.join(FORMATS_ALLOWED)} for a diffusion pipeline")
    return names[0]
