"""AWQ (reference §8.2): per-channel smoothing scales searched on calibration activations, folded into the
previous norm or linear, so that RTN or SignRound afterwards quantizes easier weights.

    mappings = find_mappings(block)                       # smooth layer -> balance layers, per architecture
    scales = awq_block(block, hidden, kwargs, schemes)    # search + fold; the block stays float-equivalent
"""

from .mappings import AwqMapping, find_mappings
from .search import awq_block

__all__ = ["AwqMapping", "awq_block", "find_mappings"]
