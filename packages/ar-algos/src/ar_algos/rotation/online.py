"""Online rotations: a layer whose weight absorbed W @ R must see x @ R at inference, so its input is rotated by
a small module run from a forward pre-hook. Loaders rebuild these from the saved `rotation_config`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ar_core.errors import ArError

from ..blocks import get_module
from .hadamard import hadamard_matrix


class OnlineHadamard(nn.Module):
    """Multiplies the last dimension, in blocks of the matrix's order, by an orthonormal matrix (not saved in the
    state dict: it is rebuilt from its size, random flag and seed)."""

    def __init__(self, size: int, random: bool = False, seed: int = 0):
        super().__init__()
        self.size, self.random, self.seed = size, random, seed
        self.register_buffer("matrix", hadamard_matrix(size, random, seed).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = x.reshape(*shape[:-1], shape[-1] // self.size, self.size).to(self.matrix.dtype) @ self.matrix
        return y.reshape(shape).to(x.dtype)


def _rotate_input(module: nn.Module, args: tuple) -> tuple:
    return (module.online_rotation(args[0]), *args[1:])


def attach_online(layer: nn.Module, size: int, random: bool = False, seed: int = 0) -> OnlineHadamard:
    """Make `layer` rotate its input by OnlineHadamard(size, random, seed) before its own forward."""
    if hasattr(layer, "online_rotation"):
        raise ArError(f"{type(layer).__name__} already has an online rotation (rotate a model only once)")
    rot = OnlineHadamard(size, random, seed).to(next(layer.parameters()).device)
    layer.online_rotation = rot
    layer.register_forward_pre_hook(_rotate_input)
    return rot


def restore_rotation(model: nn.Module, rotation_config: dict[str, Any]) -> int:
    """Re-attach the online rotations described by `rotation_config["online"]` (for loaders of rotated
    checkpoints: call it after the quantized layers are in place); returns how many layers got one."""
    count = 0
    for entry in rotation_config.get("online", []):
        for name in entry["layers"]:
            attach_online(get_module(model, name), entry["size"], entry["random"], entry["seed"])
            count += 1
    return count
