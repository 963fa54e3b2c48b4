"""Hadamard rotations (reference §8.3): QuaRot-style R1/R2/R4 and per-linear block Hadamard, exact in float,
so that outliers spread across channels before RTN or SignRound quantizes the weights.

    config = rotate_model(model, "r1r2")        # in place; returns the rotation_config to save as metadata
    restore_rotation(model, config)             # loaders: re-attach the online rotations (R4, block)
"""

from .apply import block_hadamard, parse_mode, rotate_model
from .hadamard import has_hadamard, hadamard_matrix
from .online import OnlineHadamard, attach_online, restore_rotation

__all__ = ["OnlineHadamard", "attach_online", "block_hadamard", "hadamard_matrix", "has_hadamard", "parse_mode",
           "restore_rotation", "rotate_model"]
