"""Smooth/balance mappings of a decoder block: which norm or linear can absorb 1/s for which linears' inputs * s."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..blocks import get_module


@dataclass(frozen=True)
class AwqMapping:
    """`smooth` (a norm or linear, relative name) feeds every layer of `balance`; `parent` is the smallest module
    whose output covers the balance layers (replayed to score a candidate scale)."""

    smooth: str
    balance: tuple[str, ...]
    parent: str


# (smooth, balance, parent) per decoder layout; a row applies when all of its modules exist in the block.
_LLAMA = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn"),
    ("self_attn.v_proj", ("self_attn.o_proj",), "self_attn.o_proj"),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp"),
    ("mlp.up_proj", ("mlp.down_proj",), "mlp.down_proj"),
)
_OPT = (
    ("self_attn_layer_norm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn"),
    ("self_attn.v_proj", ("self_attn.out_proj",), "self_attn.out_proj"),
    ("final_layer_norm", ("fc1",), "fc1"),
    ("fc1", ("fc2",), "fc2"),  # exact: OPT's ReLU commutes with positive scales
)
_LAYOUTS = (_LLAMA, _OPT)


def _module(block: nn.Module, name: str) -> nn.Module | None:
    try:
        return get_module(block, name)
    except AttributeError:
        return None


def _foldable(block: nn.Module, smooth: str, balance: tuple[str, ...]) -> bool:
    """Whether 1/s can be folded exactly into `smooth`: a norm with a per-channel weight (not Gemma's 1+w), or a
    linear whose outputs are exactly the balance layers' inputs (no GQA head-sharing for v -> o)."""
    mod = _module(block, smooth)
    layers = [_module(block, b) for b in balance]
    if mod is None or any(not isinstance(m, nn.Linear) for m in layers):
        return False
    width = layers[0].in_features
    if any(m.in_features != width for m in layers):
        return False
    if isinstance(mod, nn.Linear):
        return mod.out_features == width
    weight = getattr(mod, "weight", None)
    gemma_style = "gemma" in type(mod).__name__.lower()
    return weight is not None and weight.shape == (width,) and not gemma_style


def find_mappings(block: nn.Module) -> list[AwqMapping]:
    """The AWQ mappings that apply to `block` (Llama, Mistral, Qwen2/3 and OPT layouts); MoE expert MLPs,
    fused projections and unknown layouts get no mapping (AWQ leaves those layers alone)."""
    if "gemma" in type(block).__name__.lower():
        return []
    for layout in _LAYOUTS:
        found = [AwqMapping(s, b, p) for s, b, p in layout if _foldable(block, s, b) and _module(block, p) is not None]
        if found:
            return found
    return []
