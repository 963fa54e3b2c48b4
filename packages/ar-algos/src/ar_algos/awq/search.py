"""The AWQ scale search of one block: activation statistics, a grid over the ratio r, scoring by the parent
module's output MSE with RTN-quantized balance weights, then folding the best scales (float-exact)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ar_core.errors import ArError, field_error
from ar_core.quant import fake_quantize
from ar_core.scheme import QuantScheme

from ..blocks import get_module
from ..capture import run_block
from ..distributed import reduce_stats, sum_float
from .clip import clip_block
from .mappings import AwqMapping, find_mappings

Kwargs = Callable[[slice], dict[str, Any]] | dict[str, Any]
_DUO = (True, False, "both")


def _candidates(n_grid: int, duo_scaling: bool | str) -> list[tuple[float, bool]]:
    """(ratio, use duo) pairs: duo=True gives ratio 0 plain plus n-1 duo ratios; "both" half of each."""
    if duo_scaling is True:
        return [(0.0, False)] + [(i / (n_grid - 2), True) for i in range(n_grid - 1)]
    if duo_scaling is False:
        return [(i / (n_grid - 1), False) for i in range(n_grid)]
    half = max(n_grid // 2, 2)
    return [(i / (half - 1), duo) for duo in (False, True) for i in range(half)]


def _weight_mean(weights: list[torch.Tensor], group_size: int) -> torch.Tensor:
    """Mean over output rows of |W| / (its group's max |W|), per input channel."""
    w = torch.cat([x.detach().float() for x in weights], dim=0)
    rows, cols = w.shape
    gs = group_size if 0 < group_size and cols % group_size == 0 else cols
    wg = w.abs().reshape(rows, cols // gs, gs)
    wg = wg / wg.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return wg.reshape(rows, cols).mean(0)


def _scales(x_mean: torch.Tensor, w_mean: torch.Tensor, ratio: float, duo: bool) -> torch.Tensor:
    s = x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4) if duo else x_mean.pow(ratio)
    s = s.clamp_min(1e-4)
    s = s / (s.max() * s.min()).sqrt()
    return torch.where(torch.isfinite(s), s, torch.ones_like(s))


class _Recorder:
    """Hooks that record a parent module's calls (args, kwargs, output, token mask) and masked |x| sums at the
    first balance layer; `mask` is the current batch's [B, L] token weights (None: every token counts)."""

    def __init__(self, parent: nn.Module, first_balance: nn.Module):
        self.calls: list[tuple[tuple, dict, torch.Tensor, torch.Tensor | None]] = []
        self.abs_sum: torch.Tensor | None = None
        self.count = 0.0
        self.mask: torch.Tensor | None = None
        self._pending: list[tuple[tuple, dict]] = []
        self.handles = [
            parent.register_forward_pre_hook(self._pre, with_kwargs=True),
            parent.register_forward_hook(self._post),
            first_balance.register_forward_pre_hook(self._stat),
        ]

    def _pre(self, _m, args, kwargs):
        self._pending.append((args, dict(kwargs)))

    def _post(self, _m, _args, out):
        args, kwargs = self._pending.pop()
        self.calls.append((args, kwargs, _first(out).detach(), self.mask))

    def _stat(self, _m, args):
        x = args[0].detach().float().abs()
        if self.mask is not None:
            x = x * self.mask.to(x)[..., None]
        s = x.reshape(-1, x.shape[-1]).sum(0)
        self.abs_sum = s if self.abs_sum is None else self.abs_sum + s
        self.count += float(self.mask.sum()) if self.mask is not None else x.numel() / x.shape[-1]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _run(block: nn.Module, hidden: torch.Tensor, kwargs: Kwargs, batch_size: int, mask: torch.Tensor | None,
         recorders: list[_Recorder]) -> None:
    dev = next(block.parameters()).device
    with torch.no_grad():
        for start in range(0, hidden.shape[0], batch_size):
            idx = slice(start, start + batch_size)
            for r in recorders:
                r.mask = None if mask is None else mask[idx].to(dev)
            kw = kwargs(idx) if callable(kwargs) else kwargs
            run_block(block, hidden[idx].to(dev), kw)


def _replay_loss(parent: nn.Module, calls: list) -> float:
    total, count = 0.0, 0.0
    with torch.no_grad():
        for args, kwargs, ref, mask in calls:
            diff = (_first(parent(*args, **kwargs)).float() - ref.float()).pow(2)
            if mask is not None:
                diff = diff * mask.to(diff)[..., None]
            total += diff.sum().item()
            count += float(mask.sum()) * ref.shape[-1] if mask is not None else ref.numel()
    return sum_float(total) / max(sum_float(count), 1)


def _search(block: nn.Module, m: AwqMapping, rec: _Recorder, schemes: dict[str, QuantScheme],
            candidates: list[tuple[float, bool]]) -> torch.Tensor:
    """The scales of mapping `m` with the lowest parent-output MSE (balance weights left unchanged)."""
    parent = get_module(block, m.parent)
    layers = {b: get_module(block, b) for b in m.balance}
    originals = {b: l.weight.detach().clone() for b, l in layers.items()}
    quantized = [b for b in m.balance if b in schemes and schemes[b].is_quantized]
    gs = schemes[quantized[0]].effective_group_size(layers[quantized[0]].in_features)
    abs_sum = reduce_stats({"": rec.abs_sum}, "sum")[""]  # over the ranks' samples when distributed
    x_mean = (abs_sum / max(sum_float(rec.count), 1)).to(originals[m.balance[0]].device)
    w_mean = _weight_mean(list(originals.values()), gs)
    best, best_loss = torch.ones_like(x_mean), float("inf")
    try:
        for ratio, duo in candidates:
            s = _scales(x_mean, w_mean, ratio, duo)
            with torch.no_grad():
                for b in quantized:
                    w = originals[b].float()
                    layers[b].weight.copy_((fake_quantize(w * s, schemes[b]) / s).to(w.dtype))
            loss = _replay_loss(parent, rec.calls)
            if loss < best_loss:
                best, best_loss = s, loss
    finally:
        with torch.no_grad():
            for b, l in layers.items():
                l.weight.copy_(originals[b])
    return best


def fold_scales(block: nn.Module, mapping: AwqMapping, s: torch.Tensor) -> None:
    """Divide the smooth layer's output channels by `s` and multiply the balance layers' input columns by `s`."""
    smooth = get_module(block, mapping.smooth)
    with torch.no_grad():
        if isinstance(smooth, nn.Linear):
            smooth.weight.div_(s.to(smooth.weight)[:, None])
        else:
            smooth.weight.div_(s.to(smooth.weight))
        if getattr(smooth, "bias", None) is not None:
            smooth.bias.div_(s.to(smooth.bias))
        for b in mapping.balance:
            layer = get_module(block, b)
            layer.weight.mul_(s.to(layer.weight)[None, :])


def awq_block(block: nn.Module, inputs: torch.Tensor, kwargs: Kwargs, schemes: dict[str, QuantScheme],
              mappings: list[AwqMapping] | None = None, n_grid: int = 20, duo_scaling: bool | str = True,
              clip: bool = False, batch_size: int = 8, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Search and fold AWQ scales into `block` in place; returns the applied scales by smooth-layer name.

    inputs: the block's calibration hidden states [N, L, H]; kwargs: its other arguments, a dict or a function of
    the sample slice (e.g. `lambda idx: kwargs_to(block_inputs.kwargs(i, idx), dev)`); schemes: quantized layers by
    name relative to the block. Mappings default to `find_mappings(block)`; a mapping none of whose balance layers
    is quantized is skipped; `mask` ([N, L], e.g. BlockInputs.mask) drops padding from the statistics and the
    loss. With `clip`, each quantized linear's per-group range is then shrunk (hard clamp) where
    that lowers its output MSE. The block's float outputs are unchanged except for the clipping.
    """
    if not isinstance(n_grid, int) or isinstance(n_grid, bool) or n_grid < 2:
        raise field_error(ArError, "n_grid", n_grid, "an int >= 2")
    if duo_scaling not in _DUO or not isinstance(duo_scaling, (bool, str)):
        raise field_error(ArError, "duo_scaling", duo_scaling, "True, False or 'both'")
    mappings = find_mappings(block) if mappings is None else mappings
    mappings = [m for m in mappings if any(b in schemes and schemes[b].is_quantized for b in m.balance)]
    recorders = [_Recorder(get_module(block, m.parent), get_module(block, m.balance[0])) for m in mappings]
    try:
        _run(block, inputs, kwargs, batch_size, mask, recorders)
    finally:
        for r in recorders:
            r.remove()
    candidates = _candidates(n_grid, duo_scaling)
    applied: dict[str, torch.Tensor] = {}
    for m, rec in zip(mappings, recorders):
        s = _search(block, m, rec, schemes, candidates)
        fold_scales(block, m, s)
        applied[m.smooth] = s.cpu()
    if clip:
        clip_block(block, inputs, kwargs, schemes, batch_size)
    return applied
