"""Calibrated per-linear Hadamard: rotate a layer's input only where that lowers its own RTN output error.

Rotating a weight's input spreads its outliers, but it also spreads the activation energy: a weight much smaller
than its group's step rounds to zero with an error as small as itself, so a channel with large activations and small
weights costs little unrotated and a full rounding error once rotated (rotating every linear of SmolLM2-135M raises
its W4G64 RTN perplexity). So each linear of each block keeps the rotation (of order its group
size, or its whole input width) that gives the smallest error tr(E H E^T) on the calibration inputs (H = X^T X,
E = W - RTN(W), rounded in the rotated basis), and only when that beats no rotation by the `margin`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ar_core.quant import quantize
from ar_core.rotation import has_hadamard, hadamard_matrix
from ar_core.scheme import QuantScheme

from ..blocks import find_linears, get_module
from ..capture import capture_block_inputs, forward_all
from ..placement import module_device
from .apply import block_hadamard


def _rotate_blocks(w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """w [out, in] times the block-diagonal matrix with blocks r along the input dimension."""
    return (w.reshape(w.shape[0], -1, r.shape[0]) @ r).reshape(w.shape)


def rtn_error(weight: torch.Tensor, scheme: QuantScheme, gram: torch.Tensor, r: torch.Tensor | None = None) -> float:
    """tr(E H E^T): the summed squared output error of RTN on inputs whose Gram matrix is `gram` (H = X^T X);
    with `r`, of RTN in the basis rotated by blocks of r (the error rotated back: W R -> E R^T)."""
    w = weight.float() if r is None else _rotate_blocks(weight.float(), r)
    e = w - quantize(w, scheme).dequantize().float()
    e = e if r is None else _rotate_blocks(e, r.T)
    return ((e @ gram) * e).sum().item()


def best_size(weight: torch.Tensor, scheme: QuantScheme, gram: torch.Tensor, sizes: list[int], random: bool,
              seed: int, margin: float) -> int | None:
    """The rotation order among `sizes` with the lowest error, or None when none is below `margin` x unrotated."""
    best, choice = margin * rtn_error(weight, scheme, gram), None
    for size in sizes:
        err = rtn_error(weight, scheme, gram, hadamard_matrix(size, random, seed).float().to(weight.device))
        if err < best:
            best, choice = err, size
    return choice


def _grams(block: nn.Module, names: list[str], run) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """X^T X (float32) of each named linear's inputs while `run()` forwards the block; also run()'s result."""
    grams: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            grams[name] = grams[name] + x.T @ x if name in grams else x.T @ x
        return hook

    handles = [get_module(block, n).register_forward_pre_hook(hook_for(n)) for n in names]
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()
    return grams, out


@torch.no_grad()
def select_block_hadamard(model: nn.Module, blocks: list[str], schemes: dict[str, QuantScheme], samples: list[dict],
                          block_size: int | None = None, random: bool = False, seed: int = 0, margin: float = 0.9,
                          batch_size: int = 8) -> list[dict[str, Any]]:
    """Rotate, block by block, the quantized linears (names in `schemes`) whose calibration error drops below
    `margin` x unrotated; candidates: `block_size`, else the layer's group size and its whole input width (orders
    with a known Hadamard). Returns the rotation_config "online" entries."""
    inputs = capture_block_inputs(model, blocks, samples)
    hidden, online = inputs.hidden, []
    for i, b in enumerate(blocks):
        block = get_module(model, b)
        names = [n for n, m in find_linears(block).items() if f"{b}.{n}" in schemes and isinstance(m, nn.Linear)]
        grams, out = _grams(block, names, lambda: forward_all(block, inputs, i, hidden, batch_size))
        chosen: dict[int, list[str]] = {}
        for n in (n for n in names if n in grams):  # an expert that saw no token stays unrotated
            layer, scheme = get_module(block, n), schemes[f"{b}.{n}"]
            width = layer.in_features
            sizes = [block_size] if block_size else sorted({scheme.effective_group_size(width), width})
            sizes = [s for s in sizes if width % s == 0 and has_hadamard(s)]
            gram = grams[n].to(module_device(block))
            size = best_size(layer.weight, scheme, gram, sizes, random, seed, margin)
            if size is not None:
                chosen.setdefault(size, []).append(f"{b}.{n}")
        for size, layers in chosen.items():
            online += block_hadamard(model, size, layers, random=random, seed=seed)["online"]
        hidden = out  # the rotations are exact: the block's output is unchanged
    return online
