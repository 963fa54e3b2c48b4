"""The run information handed to the format writers: the reference's flat, non-default tuning knobs.

The auto-round style writers merge it into `quantization_config` (like the reference's filter_quantization_config:
keys equal to their defaults are dropped, so a default SignRound run writes only `ar_version`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import TuneConfig

# knob -> its default (what the reference drops); lr and minmax_lr are compared with the automatic 1/iters.
DEFAULTS: dict[str, Any] = {"iters": 200, "nsamples": 128, "seqlen": 2048, "batch_size": 8,
                            "gradient_accumulate_steps": 1, "enable_minmax_tuning": True,
                            "enable_quanted_input": True, "low_gpu_mem_usage": False, "amp": True, "nblocks": 1}
DEFAULT_DATASET = "NeelNanda/pile-10k"
_TUNING_ONLY = ("lr", "minmax_lr", "batch_size", "gradient_accumulate_steps", "enable_minmax_tuning", "amp",
                "nblocks")
_DATA_ONLY = ("nsamples", "seqlen", "enable_quanted_input", "low_gpu_mem_usage", "dataset")


def dataset_name(dataset: Any) -> str | None:
    """The dataset as recorded: a spec string or file path as given; None for in-memory data or the default."""
    if isinstance(dataset, (str, Path)):
        return str(dataset)
    return None


def run_info(cfg: TuneConfig, dataset: Any = None, **extra: Any) -> dict[str, Any]:
    """Flat knobs of a run that differ from the defaults, plus `ar_version` and the `extra` entries.

    Knobs that mean nothing for the run's algorithm are left out (plain RTN has no data, only SignRound tunes);
    `disable_opt_rtn` is written for plain RTN (iters=0 alone means opt-RTN).
    """
    from . import __version__

    auto_lr = 1.0 / cfg.iters if cfg.iters > 0 else None
    lr = cfg.lr if cfg.lr is not None else auto_lr
    values = {**{k: getattr(cfg, k) for k in DEFAULTS}, "lr": lr,
              "minmax_lr": cfg.minmax_lr if cfg.minmax_lr is not None else lr, "dataset": dataset_name(dataset)}
    defaults = {**DEFAULTS, "lr": auto_lr, "minmax_lr": auto_lr, "dataset": DEFAULT_DATASET}
    skip = set(_TUNING_ONLY) if cfg.algorithm != "signround" else set()
    if not cfg.calibrated:
        skip |= set(_DATA_ONLY)
    info = {k: v for k, v in values.items() if k not in skip and v is not None and v != defaults[k]}
    if cfg.algorithm == "rtn":
        info["disable_opt_rtn"] = True
    if cfg.awq:
        info.update(awq=True, awq_n_grid=cfg.awq_n_grid, awq_duo_scaling=cfg.awq_duo_scaling, awq_clip=cfg.awq_clip)
    return {**info, "ar_version": __version__, **extra}
