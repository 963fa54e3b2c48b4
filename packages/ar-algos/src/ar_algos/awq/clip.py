"""AWQ weight clipping: per group, shrink the quantization range to the ratio (1.00, 0.95, ... 0.55) that gives
the lowest output error of the layer on a token subsample, then clamp the weight to it (reference §8.2 "Clip")."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ar_core.quant import fake_quantize
from ar_core.scheme import QuantScheme

from ..blocks import get_module
from ..capture import run_block

_SKIP = ("q_proj", "k_proj")  # attention scores are too sensitive to clip their inputs' projections
_SHRINKS = [1 - i / 20 for i in range(10)]


def _tokens(block: nn.Module, names: list[str], inputs: torch.Tensor, kwargs: Any, batch_size: int,
            max_tokens: int) -> dict[str, torch.Tensor]:
    """Up to `max_tokens` evenly spaced input rows of each named linear."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [get_module(block, n).register_forward_pre_hook(
        lambda _m, args, n=n: seen[n].append(args[0].detach().reshape(-1, args[0].shape[-1]))) for n in names]
    dev = next(block.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                idx = slice(start, start + batch_size)
                run_block(block, inputs[idx].to(dev), kwargs(idx) if callable(kwargs) else kwargs)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for n, xs in seen.items():
        x = torch.cat(xs).float()
        step = max(x.shape[0] // max_tokens, 1)
        out[n] = x[::step][:max_tokens]
    return out


def clip_weight(w: torch.Tensor, x: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    """`w` ([out, in]) clamped per group to the shrunk range that minimizes ||x (w - QDQ(w_clamped))^T|| per group."""
    out_f, in_f = w.shape
    gs = scheme.effective_group_size(in_f)
    if in_f % gs:
        return w
    wg = w.float().reshape(out_f, in_f // gs, gs)
    xg = x.reshape(x.shape[0], in_f // gs, gs)  # [T, G, gs]
    hi, lo = wg.amax(-1, keepdim=True), wg.amin(-1, keepdim=True)
    if scheme.sym:
        hi = torch.maximum(hi, -lo)
        lo = -hi
    best = wg.clone()
    best_err = torch.full((out_f, in_f // gs), float("inf"), device=w.device)
    for r in _SHRINKS:
        clamped = torch.minimum(torch.maximum(wg, lo * r), hi * r)
        q = fake_quantize(clamped.reshape(out_f, in_f), scheme).reshape_as(wg)
        err = torch.einsum("tgk,ogk->tog", xg, wg - q).pow(2).sum(0)  # [out, G]
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better[..., None], clamped, best)
    return best.reshape(out_f, in_f).to(w.dtype)


def clip_block(block: nn.Module, inputs: torch.Tensor, kwargs: Callable | dict, schemes: dict[str, QuantScheme],
               batch_size: int = 8, max_tokens: int = 512) -> None:
    """Clip every quantized nn.Linear of `block` named in `schemes` (except q/k projections) in place."""
    names = [n for n, s in schemes.items() if s.is_quantized and s.data_type.startswith("int")
             and not n.endswith(_SKIP) and isinstance(get_module(block, n), nn.Linear)]
    if not names:
        return
    xs = _tokens(block, names, inputs, kwargs, batch_size, max_tokens)
    with torch.no_grad():
        for n in names:
            layer = get_module(block, n)
            layer.weight.copy_(clip_weight(layer.weight.detach(), xs[n].to(layer.weight.device), schemes[n]))
