"""The algorithms this package adds to `ar_core.registry.ALGORITHMS`: factories returning a configured AutoRound."""

from __future__ import annotations

from typing import Any

from ar_core.registry import ALGORITHMS

from .autoround import AutoRound


def signround(model: Any, **kwargs: Any) -> AutoRound:
    """AutoRound with SignRound (iters > 0; the 'default' recipe unless another is given)."""
    return AutoRound(model, **kwargs)


def opt_rtn(model: Any, **kwargs: Any) -> AutoRound:
    """AutoRound with optimized RTN (imatrix-weighted parameter search, no tuning)."""
    return AutoRound(model, recipe="opt-rtn", **kwargs)


def rtn(model: Any, **kwargs: Any) -> AutoRound:
    """AutoRound with plain round-to-nearest (no calibration data)."""
    return AutoRound(model, recipe="rtn", **kwargs)


ALGORITHMS.register("signround", signround)
ALGORITHMS.register("opt-rtn", opt_rtn)
ALGORITHMS.register("rtn", rtn)
