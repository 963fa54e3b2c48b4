"""Tuning knobs (`TuneConfig`), their validation, and the named recipes (default, best, light, opt-rtn, rtn)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ar_core.errors import ArError, field_error

# Each recipe fills only the knobs the user left unset (None).
RECIPES: dict[str, dict[str, Any]] = {
    "default": dict(iters=200, nsamples=128, seqlen=2048, batch_size=8),
    "best": dict(iters=1000, nsamples=512, seqlen=2048, batch_size=8),
    "light": dict(iters=50, nsamples=128, seqlen=2048, batch_size=8, lr=5e-3),
    "opt-rtn": dict(iters=0, nsamples=128, seqlen=2048, batch_size=8, disable_opt_rtn=False),
    "rtn": dict(iters=0, nsamples=1, seqlen=2048, batch_size=8, disable_opt_rtn=True),
}


@dataclass
class TuneConfig:
    """Every knob of the block-wise algorithms (SignRound, opt-RTN, RTN); see the AutoRound docstring."""

    iters: int = 200
    lr: float | None = None
    minmax_lr: float | None = None
    nsamples: int = 128
    seqlen: int = 2048
    batch_size: int = 8
    gradient_accumulate_steps: int = 1
    nblocks: int = 1
    enable_minmax_tuning: bool = True
    enable_quanted_input: bool = True
    not_use_best_mse: bool = False
    dynamic_max_gap: int = -1
    enable_adam: bool = False
    amp: bool = True
    low_gpu_mem_usage: bool = False
    disable_opt_rtn: bool = False
    start_from_opt_rtn: bool = True
    enable_torch_compile: bool = False
    seed: int = 42
    deterministic: bool = False
    awq: bool = False
    awq_n_grid: int = 20
    awq_duo_scaling: bool | str = True
    awq_clip: bool = False
    e2e_steps: int = 0
    e2e_lr: float = 1e-2
    e2e_topk: int = 128

    @property
    def algorithm(self) -> str:
        """'signround' when iters > 0, else 'opt-rtn' or 'rtn' (AWQ, when on, runs before any of them)."""
        if self.iters > 0:
            return "signround"
        return "rtn" if self.disable_opt_rtn else "opt-rtn"

    @property
    def calibrated(self) -> bool:
        """Whether the run needs calibration data: anything but plain RTN, or AWQ."""
        return self.algorithm != "rtn" or self.awq

    def layer_lr(self, bits: int) -> float:
        """Rounding lr of a layer: the user's lr, else 1/iters (2/iters for <=3-bit layers at >=1000 iters)."""
        if self.lr is not None:
            return self.lr
        return (2.0 if self.iters >= 1000 and bits <= 3 else 1.0) / self.iters

    def layer_minmax_lr(self, bits: int) -> float:
        """lr of the min/max range scales: minmax_lr, else the layer's rounding lr."""
        return self.minmax_lr if self.minmax_lr is not None else self.layer_lr(bits)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view of every knob."""
        return dataclasses.asdict(self)


def _int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise field_error(ArError, name, value, f"an int >= {low}")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise field_error(ArError, name, value, "True or False")


def validate(cfg: TuneConfig) -> TuneConfig:
    """Raise ArError naming the first bad knob of `cfg`; returns `cfg`."""
    _int("iters", cfg.iters, 0)
    for name in ("nsamples", "seqlen", "batch_size", "gradient_accumulate_steps", "nblocks"):
        _int(name, getattr(cfg, name), 1)
    _int("seed", cfg.seed, 0)
    _int("e2e_steps", cfg.e2e_steps, 0)
    _int("e2e_topk", cfg.e2e_topk, 1)
    if isinstance(cfg.e2e_lr, bool) or not isinstance(cfg.e2e_lr, (int, float)) or not 0 < cfg.e2e_lr <= 0.1:
        raise field_error(ArError, "e2e_lr", cfg.e2e_lr, "a number in (0, 0.1] (relative change of a scale per step)")
    if cfg.e2e_steps and cfg.algorithm == "rtn" and not cfg.awq:
        raise field_error(ArError, "e2e_steps", cfg.e2e_steps, "0 with plain RTN (the end-to-end stage needs "
                          "calibration data: use iters > 0 or optimized RTN)")
    _int("awq_n_grid", cfg.awq_n_grid, 2)
    if not isinstance(cfg.awq_duo_scaling, (bool, str)) or cfg.awq_duo_scaling not in (True, False, "both"):
        raise field_error(ArError, "awq_duo_scaling", cfg.awq_duo_scaling, "True, False or 'both'")
    if not isinstance(cfg.dynamic_max_gap, int) or isinstance(cfg.dynamic_max_gap, bool) or \
            cfg.dynamic_max_gap == 0 or cfg.dynamic_max_gap < -1:
        raise field_error(ArError, "dynamic_max_gap", cfg.dynamic_max_gap, "-1 (off) or an int >= 1")
    for name in ("lr", "minmax_lr"):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1):
            raise field_error(ArError, name, v, "None (automatic) or a number in (0, 1]")
    if cfg.awq and cfg.nblocks > 1:
        raise field_error(ArError, "nblocks", cfg.nblocks, "1 with AWQ (its scales are searched block by block)")
    for f in dataclasses.fields(cfg):
        if f.type == "bool":
            _bool(f.name, getattr(cfg, f.name))
    return cfg


def make_config(recipe: str | None = None, **knobs: Any) -> TuneConfig:
    """A validated TuneConfig: `knobs` set by the user (not None) win over the recipe, then over the defaults."""
    name = (recipe or "default").lower().replace("_", "-")
    if name not in RECIPES:
        raise field_error(ArError, "recipe", recipe, f"one of {sorted(RECIPES)}")
    known = {f.name for f in dataclasses.fields(TuneConfig)}
    unknown = sorted(set(knobs) - known)
    if unknown:
        raise field_error(ArError, "option", unknown[0], f"one of {sorted(known)}")
    values = {**RECIPES[name], **{k: v for k, v in knobs.items() if v is not None}}
    return validate(TuneConfig(**reference_start(values, knobs.get("start_from_opt_rtn"))))


def reference_start(values: dict[str, Any], start_from_opt_rtn: Any) -> dict[str, Any]:
    """`values` with the reference's meaning of disable_opt_rtn=True when iters > 0: SignRound starts from plain
    RTN (start_from_opt_rtn=False). Our default start (optimized RTN) stays when disable_opt_rtn is not set; asking
    for both is a contradiction (ArError)."""
    iters = values.get("iters", TuneConfig.iters)
    if values.get("disable_opt_rtn") is not True or not isinstance(iters, int) or iters <= 0:
        return values
    if start_from_opt_rtn is True:
        raise field_error(ArError, "start_from_opt_rtn", True,
                          "False or None with disable_opt_rtn=True and iters > 0 (SignRound then starts from plain "
                          "RTN, as in the reference)")
    return {**values, "start_from_opt_rtn": False}
