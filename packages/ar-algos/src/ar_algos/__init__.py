"""ar-algos: Calibration, block-wise driver, RTN, optimized RTN, SignRound, AWQ, AutoScheme and the AutoRound API."""

__version__ = "0.1.0"
