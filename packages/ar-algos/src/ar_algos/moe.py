"""Unfuse transformers-5 fused MoE experts (3-D `gate_up_proj` / `down_proj` parameters) into per-expert Linears.

Each expert becomes an ordinary `gate_proj` / `up_proj` / `down_proj` nn.Linear, so it is quantized and tuned like
any other layer of its block while routing stays exactly as before. Routers are left untouched (16-bit).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import set_module


class ExpertMLP(nn.Module):
    """One expert: down(act(gate(x)) * up(x))."""

    def __init__(self, hidden: int, inter: int, act_fn, dtype, device):
        super().__init__()
        kw = dict(bias=False, dtype=dtype, device=device)
        self.gate_proj = nn.Linear(hidden, inter, **kw)
        self.up_proj = nn.Linear(hidden, inter, **kw)
        self.down_proj = nn.Linear(inter, hidden, **kw)
        self.act_fn = act_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The expert's output for tokens x [T, hidden]."""
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class UnfusedExperts(nn.ModuleList):
    """Drop-in replacement for a fused experts module: same call signature (tokens, top-k ids, top-k weights)."""

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor):
        """Sum over each token's chosen experts of weight * expert(token); tokens [T, hidden], top-k [T, k]."""
        out = torch.zeros_like(hidden_states)
        for e, expert in enumerate(self):
            token_idx, slot = torch.where(top_k_index == e)
            if token_idx.numel() == 0:
                continue
            y = expert(hidden_states[token_idx]) * top_k_weights[token_idx, slot, None]
            out.index_add_(0, token_idx, y.to(out.dtype))
        return out


def _is_fused(module: nn.Module) -> bool:
    """Plain fused layout only: gate_up [E, 2I, H], down [E, H, I], an act_fn and no other parameters."""
    params = dict(module.named_parameters(recurse=False))
    if set(params) != {"gate_up_proj", "down_proj"} or not hasattr(module, "act_fn"):
        return False
    gu, down = params["gate_up_proj"], params["down_proj"]
    return (gu.dim() == 3 and down.dim() == 3 and gu.shape[0] == down.shape[0]
            and gu.shape[1] == 2 * down.shape[2] and gu.shape[2] == down.shape[1])


def unfuse(module: nn.Module) -> UnfusedExperts:
    """Per-expert Linears holding exactly the fused weights of `module`."""
    gu, down = module.gate_up_proj.data, module.down_proj.data
    n, two_i, hidden = gu.shape
    inter = two_i // 2
    experts = UnfusedExperts()
    for e in range(n):
        mlp = ExpertMLP(hidden, inter, module.act_fn, gu.dtype, gu.device)
        with torch.no_grad():
            mlp.gate_proj.weight.copy_(gu[e, :inter])
            mlp.up_proj.weight.copy_(gu[e, inter:])
            mlp.down_proj.weight.copy_(down[e])
        experts.append(mlp)
    return experts


def unfuse_experts(model: nn.Module) -> list[str]:
    """Replace every fused experts module of `model` in place; returns the names replaced."""
    names = [name for name, m in model.named_modules() if name and _is_fused(m)]
    for name in names:
        set_module(model, name, unfuse(model.get_submodule(name)))
    return names
