"""QuaRot-style offline rotation of a Llama-family model (reference §8.3), exact in float.

R1 rotates the residual stream (hidden size): embeddings, every q/k/v/gate/up input, every o/down output and the
LM head, after the RMSNorm scales are folded into the following linears. R2 rotates each attention head's values
(v_proj outputs, o_proj inputs). R4 rotates down_proj's inputs: the weight absorbs it and an online pre-hook
rotates the activations. `block_hadamard` rotates every linear's input in blocks (weight fused, online hook).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ar_core.errors import ArError, field_error
from ar_core.rotation import attach_online, hadamard_matrix

from ..blocks import find_blocks, find_linears, find_lm_head, get_module, has_tied_head

_ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_NORMS = ("input_layernorm", "post_attention_layernorm")


def parse_mode(mode: str) -> tuple[str, ...]:
    """("r1", "r2", "r4") subset named by a mode string like "r1", "r1r2" or "r1r2r4"."""
    if not isinstance(mode, str) or not re.fullmatch(r"(r[124])+", mode.lower()):
        raise field_error(ArError, "rotation mode", mode, "a concatenation of r1, r2 and r4 such as 'r1r2'")
    parts = tuple(sorted(set(re.findall(r"r[124]", mode.lower()))))
    return parts


def _check(model: nn.Module, blocks: list[str], head: str | None) -> None:
    """Raise ArError unless every block has the Llama layout with plain RMSNorm (no bias, no 1+w)."""
    for b in blocks:
        block = get_module(model, b)
        for name in _ATTN + _MLP:
            try:
                layer = get_module(block, name)
            except AttributeError:
                layer = None
            if not isinstance(layer, nn.Linear):
                raise ArError(f"rotation supports Llama/Mistral/Qwen2/Qwen3 dense layouts; block {b!r} of "
                              f"{type(model).__name__} has no nn.Linear {name!r}")
        for name in _NORMS:
            norm = getattr(block, name, None)
            if norm is None or "rmsnorm" not in type(norm).__name__.lower() or "gemma" in type(norm).__name__.lower():
                raise ArError(f"rotation needs plain RMSNorm layers; block {b!r} has {type(norm).__name__} {name!r}")
    if head is None:
        raise ArError(f"rotation needs an LM head; {type(model).__name__} has none")


def _final_norm(model: nn.Module) -> nn.Module:
    norm = getattr(model.base_model, "norm", None)
    if norm is None:
        raise ArError(f"rotation needs the final norm at base_model.norm; {type(model).__name__} has none")
    return norm


def _fold_norm(norm: nn.Module, layers: list[nn.Linear]) -> None:
    """Multiply the layers' input columns by the norm's weight, then set the norm's weight to 1."""
    w = norm.weight.detach().double()
    for layer in layers:
        w = w.to(layer.weight.device)
        layer.weight.copy_((layer.weight.double() * w[None, :]).to(layer.weight.dtype))
    norm.weight.fill_(1.0)


def _rotate_in(layer: nn.Module, r: torch.Tensor) -> None:
    """Weight W ([out, in], or an embedding [vocab, dim]) becomes W @ R."""
    r = r.to(layer.weight.device)
    layer.weight.copy_((layer.weight.double() @ r).to(layer.weight.dtype))


def _rotate_out(layer: nn.Linear, r: torch.Tensor) -> None:
    """A linear's outputs y become y @ R: W becomes R^T W, the bias b @ R."""
    r = r.to(layer.weight.device)
    layer.weight.copy_((r.T @ layer.weight.double()).to(layer.weight.dtype))
    if layer.bias is not None:
        layer.bias.copy_((layer.bias.double() @ r).to(layer.bias.dtype))


def _rotate_heads(v: nn.Linear, o: nn.Linear, r: torch.Tensor) -> None:
    """Per head: v_proj's outputs and o_proj's inputs are multiplied by R (order head_dim)."""
    hd, r = r.shape[0], r.to(v.weight.device)
    wv = v.weight.double().reshape(-1, hd, v.in_features)
    v.weight.copy_(torch.einsum("dk,hdi->hki", r, wv).reshape(v.weight.shape).to(v.weight.dtype))
    if v.bias is not None:
        v.bias.copy_((v.bias.double().reshape(-1, hd) @ r).reshape(-1).to(v.bias.dtype))
    wo = o.weight.double().reshape(o.out_features, -1, hd)
    o.weight.copy_((wo @ r).reshape(o.weight.shape).to(o.weight.dtype))


def _untie(model: nn.Module, head: nn.Module) -> None:
    head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    if hasattr(model, "config"):
        model.config.tie_word_embeddings = False


def _head_dim(model: nn.Module) -> int:
    cfg = model.config
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


@torch.no_grad()
def rotate_model(model: nn.Module, mode: str = "r1", random: bool = False, seed: int = 0) -> dict[str, Any]:
    """Rotate `model` in place (output-preserving in float) and return its `rotation_config` (also set on
    `model.config.rotation_config`), which records the online rotations a loader must restore (`restore_rotation`).

    mode: "r1", "r2", "r4" or a concatenation ("r1r2", "r1r2r4"); random: Hadamard times random signs (or a random
    orthogonal matrix where no Hadamard of that order is known); seed: R1 uses seed, R2 seed + 1, R4 seed + 2.
    """
    parts = parse_mode(mode)
    blocks = find_blocks(model)
    head_name = find_lm_head(model, blocks)
    _check(model, blocks, head_name)
    head = get_module(model, head_name)
    online: list[dict[str, Any]] = []
    if "r1" in parts:
        if has_tied_head(model):
            _untie(model, head)
        r1 = hadamard_matrix(model.config.hidden_size, random, seed)
        _fold_norm(_final_norm(model), [head])
        _rotate_in(model.get_input_embeddings(), r1)
        _rotate_in(head, r1)
        for b in blocks:
            block = get_module(model, b)
            _fold_norm(block.input_layernorm, [get_module(block, n) for n in _ATTN[:3]])
            _fold_norm(block.post_attention_layernorm, [get_module(block, n) for n in _MLP[:2]])
            for n in _ATTN[:3] + _MLP[:2]:
                _rotate_in(get_module(block, n), r1)
            for n in (_ATTN[3], _MLP[2]):
                _rotate_out(get_module(block, n), r1)
    if "r2" in parts:
        r2 = hadamard_matrix(_head_dim(model), random, seed + 1)
        for b in blocks:
            block = get_module(model, b)
            _rotate_heads(block.self_attn.v_proj, block.self_attn.o_proj, r2)
    if "r4" in parts:
        size = get_module(model, f"{blocks[0]}.mlp.down_proj").in_features
        r4 = hadamard_matrix(size, random, seed + 2)
        names = [f"{b}.mlp.down_proj" for b in blocks]
        for n in names:
            _rotate_in(get_module(model, n), r4)
            attach_online(get_module(model, n), size, random, seed + 2)
        online.append({"layers": names, "size": size, "random": random, "seed": seed + 2})
    config = {"mode": "".join(parts), "random": random, "seed": seed, "online": online}
    if hasattr(model, "config"):
        model.config.rotation_config = config
    return config


@torch.no_grad()
def block_hadamard(model: nn.Module, block_size: int, layers: list[str] | None = None, random: bool = False,
                   seed: int = 0) -> dict[str, Any]:
    """Rotate the inputs of `layers` (default: every linear inside the decoder blocks) by a block-diagonal
    Hadamard of order `block_size` (usually the group size): weights fused, activations rotated online.
    Returns the rotation_config entry describing the online rotations."""
    if layers is None:
        layers = [f"{b}.{n}" for b in find_blocks(model) for n in find_linears(get_module(model, b))]
    r = hadamard_matrix(block_size, random, seed)
    for name in layers:
        layer = get_module(model, name)
        if not isinstance(layer, nn.Linear) or layer.in_features % block_size:
            width = getattr(layer, "in_features", None)
            raise field_error(ArError, "block_size", block_size,
                              f"a divisor of every rotated nn.Linear's in_features ({name} has {width})")
        w = layer.weight.double().reshape(layer.out_features, -1, block_size) @ r.to(layer.weight.device)
        layer.weight.copy_(w.reshape(layer.weight.shape).to(layer.weight.dtype))
        attach_online(layer, block_size, random, seed)
    config = {"mode": "block", "random": random, "seed": seed,
              "online": [{"layers": list(layers), "size": block_size, "random": random, "seed": seed}]}
    if hasattr(model, "config"):
        model.config.rotation_config = config
    return config
