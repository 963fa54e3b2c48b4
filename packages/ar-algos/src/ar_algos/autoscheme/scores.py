"""Layer sensitivity: the first-order loss change each option's rounding causes, from one pass of gradients.

For every calibration batch the LM loss (next-token cross-entropy) is back-propagated through the 16-bit model.
When a layer's weight gradient G is ready, a hook adds sum(|G * (Q_o(W) - W)|) for every option o (the reference's
first-order estimate) and frees G at once; Q_o(W) - W is rebuilt from W right there. So no second copy of the
weights and no full set of gradients is ever held, activations are recomputed block by block (checkpointing) and
the logits are produced a chunk of tokens at a time. The reference takes the gradient at the quantized model, once
per option; here one backward per batch serves all options.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ar_core.quant import fake_quantize
from ar_core.scheme import QuantScheme

from ..blocks import as_stored, weight_of
from ..distributed import rank, sum_scores, world_size

LOGIT_CHUNK = 128  # tokens whose logits exist at once


def _set_checkpointing(model: nn.Module, on: bool) -> None:
    if on:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


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
        _set_checkpointing(model, True)
        model.train()
    try:
        yield
    finally:
        if can_checkpoint:
            _set_checkpointing(model, False)
        model.train(was_training)
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None


def _chunked_head(model: nn.Module):
    """(decoder, lm_head) when the loss can be computed from the decoder's hidden states chunk by chunk."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None
    get_decoder = getattr(model, "get_decoder", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    decoder = get_decoder() if get_decoder is not None else None
    if decoder is None or decoder is model or head is None:
        return None
    return decoder, head


def lm_loss(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (padding excluded), without holding all logits at once when possible."""
    labels = ids.masked_fill(mask == 0, -100)
    parts = _chunked_head(model)
    if parts is None:
        return model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
    decoder, head = parts
    h = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    h = h[:, :-1].reshape(-1, h.shape[-1])
    target = labels[:, 1:].reshape(-1)

    def chunk_loss(hc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(hc).float(), tc, ignore_index=-100, reduction="sum")

    total = sum(checkpoint(chunk_loss, h[i:i + LOGIT_CHUNK], target[i:i + LOGIT_CHUNK], use_reentrant=False)
                for i in range(0, h.shape[0], LOGIT_CHUNK))
    return total / (target != -100).sum().clamp(min=1)


def layer_scores(model: nn.Module, layers: dict[str, nn.Module], options: dict[str, list[QuantScheme | None]],
                 samples: list[dict], batch_size: int, checkpointing: bool = True) -> dict[str, list[float]]:
    """Per layer, per option: sum over batches of sum(|dL/dW * (Q(W) - W)|); None options (16-bit) score 0.

    options[name] lists, for each candidate, the scheme that layer would really get (after shape rules).
    Under torchrun each rank scores every world_size-th batch and the scores are summed over the ranks.
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
                        scores[name][j] += float((g * (fake_quantize(w, s) - w.float())).abs().sum())
            param.grad = None
        return hook

    handles = []
    with _grad_mode(model, layers, checkpointing):
        for name, layer in layers.items():
            handles.append(layer.weight.register_post_accumulate_grad_hook(hook_for(name, layer)))
        try:
            for i in range(0, len(samples), batch_size)[rank()::world_size()]:
                batch = samples[i:i + batch_size]
                ids = torch.cat([s["input_ids"] for s in batch]).to(device)
                mask = torch.cat([s["attention_mask"] for s in batch]).to(device)
                lm_loss(model, ids, mask).backward()
        finally:
            for h in handles:
                h.remove()
    return sum_scores(scores)
