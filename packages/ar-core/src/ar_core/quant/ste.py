"""Straight-through estimators shared by every data type."""

from __future__ import annotations

import torch


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest-even in the forward pass, identity gradient in the backward pass. With no gradient being
    recorded it is one plain round: x + (round(x) - x) equals round(x) exactly (round(x) - x is exact in floating
    point), up to the sign of a zero."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """Floor in the forward pass, identity gradient in the backward pass."""
    return x + (torch.floor(x) - x).detach()
