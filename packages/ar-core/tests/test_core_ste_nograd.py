"""round_ste without gradients is a plain round with the same values as the straight-through form."""

from __future__ import annotations

import torch

from ar_core.quant.ste import round_ste


def test_round_ste_without_grad_equals_the_straight_through_values():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100_000, generator=g) * s for s in (0.3, 7.0, 300.0, 2.0**22)]
                  + [torch.arange(-50, 50) + 0.5, torch.tensor([0.0, -0.0, 0.49999997, -0.49999997, 2.0**24 + 2])])
    with torch.no_grad():
        fast = round_ste(x)
    slow = round_ste(x.clone().requires_grad_())
    assert torch.equal(fast, slow.detach()) and torch.equal(fast, torch.round(x))


def test_round_ste_still_passes_the_gradient_through():
    x = torch.tensor([0.2, 1.7, -2.5], requires_grad=True)
    round_ste(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(3))
