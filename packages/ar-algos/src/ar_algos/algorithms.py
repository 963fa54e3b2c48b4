"""The algorithms this package adds to `ar_core.registry.ALGORITHMS`: factories returning a configured AutoRound."""

from __future__ import annotations

from typing import Any

from ar_core.registry import ALGORITHMS

from .autoround import AutoRound
from .autoscheme import AutoScheme


def signround(model: Any, **kwargs: Any) -> AutoRound:
    """AutoRound with SignRound (iters > 0; the 'default' recipe unless another is given)."""
    return AutoRound(model, **kwargs)


def opt_rtn(model: Any, **kwargs: Any) -> AutoRound:
    """AutoRound with optimized RTN (imatrix-weighted parameter search, no tuning)."""
    return AutoRound(model, recipe="opt-rtn", **kwargs)


def rtn(model: Any, **kwargs: Any) -> AutoRound:
    """AutoRound with plain round-to-nearest (no calibration data)."""
    return AutoRound(model, recipe="rtn", **kwargs)


def awq(model: Any, **kwargs: Any) -> AutoRound:
    """AutoRound with AWQ scale search then plain RTN (algorithm="awq"; pass algorithm="awq,auto_round" to tune)."""
    return AutoRound(model, **{"algorithm": "awq", **kwargs})


def autoscheme(model: Any, avg_bits: float, options: Any, shared_layers: list | None = None,
               ignore_scale_zp_bits: bool = False, **kwargs: Any) -> AutoRound:
    """AutoRound on the mixed-bit layer_config an AutoScheme search finds (avg_bits, options, shared_layers and
    ignore_scale_zp_bits go to the search, with its own calibration defaults; the rest to AutoRound)."""
    search = AutoScheme(avg_bits, options, shared_layers=shared_layers, ignore_scale_zp_bits=ignore_scale_zp_bits,
                        verbose=kwargs.get("verbose", True))
    return AutoRound(model, scheme=search, **kwargs)


ALGORITHMS.register("signround", signround)
ALGORITHMS.register("opt-rtn", opt_rtn)
ALGORITHMS.register("rtn", rtn)
ALGORITHMS.register("autoscheme", autoscheme)
ALGORITHMS.register("awq", awq)
