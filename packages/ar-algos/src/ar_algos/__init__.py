"""ar-algos: Calibration, block-wise driver, RTN, optimized RTN, SignRound, AWQ, AutoScheme and the AutoRound API."""

from . import algorithms  # noqa: F401  (registers rtn, opt-rtn and signround in ar_core.registry.ALGORITHMS)
from .autoround import AutoRound
from .config import RECIPES, TuneConfig

__all__ = ["AutoRound", "RECIPES", "TuneConfig"]
__version__ = "0.1.0"
