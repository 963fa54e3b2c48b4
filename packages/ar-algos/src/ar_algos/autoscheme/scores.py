"""Layer sensitivity: the first-order loss change each option's rounding causes, from one pass of gradients.

For every calibration batch the LM loss (labels = input ids) is back-propagated through the 16-bit model. When a
layer's weight gradient G is ready, a hook adds sum(|G * (Q_o(W) - W)|) for every option o (the reference's
first-order estimate) and frees G at once, and Q_o(W) - W is rebuilt from W right there, so no second copy of the
weights and no full set of gradients is ever held. The reference takes the gradient at the quantized model, once
per option; here one backward per batch serves all options.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ar_core.quant import fake_quantize
from ar_core.scheme import QuantScheme

from ..blocks import as_stored, weight_of


@contextmanager
def _grad_mode(model: nn.Module, layers: dict[str, nn.Module], checkpointing: bool) -> Iterator[None]:
    """Only the scored weights need gradients; optionally recompute activations (gradient checkpointing)."""
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers.values():
        layer.weight.requires_grad_(True)
    can_checkpoint = checkpointing and getattr(model, "supports_gradient_checkpointing", False)
    if can_checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
    try:
        yield
    finally:
        if can_checkpoint:
            model.gradient_checkpointing_disable()
        model.train(was_training)
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None


def layer_scores(model: nn.Module, layers: dict[str, nn.Module], options: dict[str, list[QuantScheme | None]],
                 samples: list[dict], batch_size: int, checkpointing: bool = True) -> dict[str, list[float]]:
    """Per layer, per option: sum over batches of sum(|dL/dW * (Q(W) - W)|); None options (16-bit) score 0.

    options[name] lists, for each candidate, the scheme that layer would really get (after shape rules).
    """
    scores = {n: [0.0] * len(options[n]) for n in layers}
    device = next(model.parameters()).device

    def hook_for(name: str, layer: nn.Module):
        def hook(param: torch.Tensor) -> None:
            with torch.no_grad():
                g = as_stored(layer, param.grad).float()  # [out, in] (Conv1D stores the transpose)
                w = weight_of(layer).detach()
                for j, s in enumerate(options[name]):
                    if s is not None:
                        delta = fake_quantize(w, s) - w.float()
                        scores[name][j] += float((g * delta).abs().sum())
            param.grad = None
        return hook

    handles = []
    with _grad_mode(model, layers, checkpointing):
        for name, layer in layers.items():
            handles.append(layer.weight.register_post_accumulate_grad_hook(hook_for(name, layer)))
        try:
            for i in range(0, len(samples), batch_size):
                batch = samples[i:i + batch_size]
                ids = torch.cat([s["input_ids"] for s in batch]).to(device)
                mask = torch.cat([s["attention_mask"] for s in batch]).to(device)
                labels = ids.masked_fill(mask == 0, -100)
                out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
                out.loss.backward()
                del out
        finally:
            for h in handles:
                h.remove()
    return scores
