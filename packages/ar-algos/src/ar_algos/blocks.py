"""Find the repeated decoder blocks of a Hugging Face causal LM, the linears inside them, and the LM head."""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ar_core.errors import ArError

# Module lists under these names hold vision/audio towers, not the text decoder.
_NON_TEXT = ("vision", "visual", "audio", "image", "mm_projector")
# Router / gate layers that pick experts stay in 16 bits (quantizing them changes routing).
_ROUTER_SUFFIXES = (".gate", "router", "shared_expert_gate")


def find_blocks(model: nn.Module) -> list[str]:
    """Names of the decoder blocks ("model.layers.0", ...): the children of the longest top-level ModuleList."""
    lists: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if any(name.startswith(outer + ".") for outer, _ in lists):
            continue  # nested inside an earlier list (experts inside a block)
        if any(tag in name.lower() for tag in _NON_TEXT):
            continue
        lists.append((name, module))
    if not lists:
        raise ArError(f"model={type(model).__name__} has no nn.ModuleList of decoder blocks; "
                      "only models built from repeated blocks (HF causal LMs) can be quantized block by block")
    name, module = max(lists, key=lambda item: len(item[1]))
    return [f"{name}.{i}" for i in range(len(module))]


def select_blocks(model: nn.Module, block_names) -> list[str]:
    """The chain of blocks named by the user (`block_names` / `to_quant_block_names`).

    A comma-separated string or a list of names; a name of an nn.ModuleList stands for all its children (e.g.
    "model.language_model.layers"), any other name is one block. A list holding one list (the reference's list of
    block lists) is accepted; several lists are refused, as the blocks are tuned as one chain.
    """
    names = block_names.split(",") if isinstance(block_names, str) else block_names
    if isinstance(names, (list, tuple)) and len(names) == 1 and isinstance(names[0], (list, tuple)):
        names = names[0]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ArError(f"block_names={block_names!r} is not allowed: a block-list name like 'model.layers', a "
                      "comma-separated string or a list of block names (one chain of blocks)")
    modules = dict(model.named_modules())
    out: list[str] = []
    for name in (n.strip() for n in names):
        module = modules.get(name)
        if module is None:
            raise ArError(f"block_names entry {name!r} is not a module of the model; e.g. "
                          f"{find_blocks(model)[0].rpartition('.')[0]!r}")
        out += [f"{name}.{i}" for i in range(len(module))] if isinstance(module, nn.ModuleList) else [name]
    if len(set(out)) != len(out):
        raise ArError(f"block_names={block_names!r} names a block twice")
    return out


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` ("" is the model itself)."""
    return model.get_submodule(name) if name else model


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called `name` by `new`."""
    parent, _, child = name.rpartition(".")
    setattr(get_module(model, parent), child, new)


def is_linear(module: nn.Module) -> bool:
    """Whether `module` is a weight layer the algorithms quantize (nn.Linear or GPT-2's Conv1D)."""
    return isinstance(module, (nn.Linear, Conv1D))


def is_router(name: str) -> bool:
    """Whether a layer name is an MoE router/gate, kept in 16 bits."""
    return name.endswith(_ROUTER_SUFFIXES)


def find_linears(module: nn.Module) -> dict[str, nn.Module]:
    """Weight layers under `module`, by name relative to it ("" when `module` is one)."""
    return {name: m for name, m in module.named_modules() if is_linear(m)}


def weight_of(layer: nn.Module) -> torch.Tensor:
    """The weight as [out_features, in_features] (Conv1D stores it transposed)."""
    return layer.weight.t() if isinstance(layer, Conv1D) else layer.weight


def weight_key(name: str) -> str:
    """Parameter name of a layer's weight inside its block (for functional calls)."""
    return f"{name}.weight" if name else "weight"


def as_stored(layer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Turn an [out, in] weight into the layout `layer` stores (transposed for Conv1D)."""
    return w.t() if isinstance(layer, Conv1D) else w


def write_weight(layer: nn.Module, w: torch.Tensor) -> None:
    """Copy an [out, in] weight into `layer` in its own dtype and layout."""
    with torch.no_grad():
        layer.weight.copy_(as_stored(layer, w).to(layer.weight.dtype))


def find_lm_head(model: nn.Module, blocks: list[str]) -> str | None:
    """Name of the output projection (the model's output embeddings), or None when it has none."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None
    for name, module in model.named_modules():
        if module is head and not any(name.startswith(b + ".") for b in blocks):
            return name
    return None


def has_tied_head(model: nn.Module) -> bool:
    """Whether the LM head shares its weight with the input embeddings."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return head is not None and emb is not None and head.weight is emb.weight
