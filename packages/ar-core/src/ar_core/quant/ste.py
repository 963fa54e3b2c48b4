"""Straight-through estimators shared by every data type."""

from __future__ import annotations

import torch


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest-even in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """Floor in the forward pass, identity gradient in the backward pass."""
    return x + (torch.floor(x) - x).detach()
