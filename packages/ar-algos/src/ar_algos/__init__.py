"""ar-algos: Calibration, block-wise driver, RTN, optimized RTN, SignRound, AWQ, AutoScheme and the AutoRound API."""

from . import algorithms  # noqa: F401  (registers rtn, opt-rtn, signround, awq, autoscheme in ar_core.registry.ALGORITHMS)
from .autoround import AutoRound
from .autoscheme import AutoScheme
from .config import RECIPES, TuneConfig

__all__ = ["AutoRound", "AutoScheme", "RECIPES", "TuneConfig"]
__version__ = "0.1.0"
