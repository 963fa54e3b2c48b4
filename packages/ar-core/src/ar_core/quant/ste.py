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


class _RoundClamp(torch.autograd.Function):
    """clamp(round(x), lo, hi) forward; the gradient passes where round(x) lies in [lo, hi] (a one-byte mask)."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        r = torch.round(x)
        ctx.save_for_backward((r >= lo) & (r <= hi))
        return r.clamp_(lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return torch.where(inside, grad, 0.0), None, None


def round_clamp_ste(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """clamp(round_ste(x), lo, hi) in one autograd node: same values and gradients, less saved state."""
    return _RoundClamp.apply(x, lo, hi)
