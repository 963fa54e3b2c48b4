"""Hadamard rotations (reference §8.3): QuaRot-style R1/R2/R4 (`apply`), per-linear block Hadamard, and the
calibrated per-linear choice behind AutoRound's rotation="hadamard" (`select`), exact in float.

    spec = parse_rotation("hadamard")           # AutoRound(rotation=...) / ar quantize --rotation
    config = rotate_model(model, "r1r2")        # in place; returns the rotation_config to save as metadata
    restore_rotation(model, config)             # loaders: re-attach the online rotations (R4, block)
"""

from ar_core.rotation import OnlineHadamard, attach_online, has_hadamard, hadamard_matrix, restore_rotation

from .apply import block_hadamard, parse_mode, rotate_model
from .select import select_block_hadamard
from .spec import apply_rotation, parse_rotation

__all__ = ["OnlineHadamard", "apply_rotation", "attach_online", "block_hadamard", "hadamard_matrix", "has_hadamard",
           "parse_mode", "parse_rotation", "restore_rotation", "rotate_model", "select_block_hadamard"]
