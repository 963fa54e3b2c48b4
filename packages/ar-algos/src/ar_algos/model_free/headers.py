"""Plan from config.json and the safetensors headers alone: no transformers import, no model object.

The headers give every tensor's name, dtype and shape. What they do not give is the model's module order (the order
of `model.state_dict()`, which sets the output's shard split and the order of the writer's per-layer config) and
which 2-D weights belong to Linear modules. For the families in `FAMILIES` that knowledge is written down here: the
names of their modules and parameters in definition order, whether their linears are GPT-2 `Conv1D` (stored
transposed), and that an MoE `gate` is a router module, not a Linear. `describe_headers` returns None for anything
else (another family, a tensor name the table does not know, a checkpoint whose names do not start at the model's
root), and the caller falls back to the meta-device model.

`config_dict` rebuilds the dict transformers' `AutoConfig.from_pretrained(path).to_dict()` gives for a config.json
that the installed transformers wrote itself: the stored keys plus the base keys `save_pretrained` leaves out when
they hold their defaults (`BASE_DEFAULTS`, pinned against transformers by a test). A config.json from another
transformers version may be rewritten on load (renamed or derived fields), so it gets None and the caller asks
transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from ar_core.layer_config import LayerInfo

from .layout import FUSED, HEAD, Layout, block_of
from .source import Checkpoint

INPUT_EMBEDDINGS = ("embed_tokens", "wte")
EMBEDDINGS = (*INPUT_EMBEDDINGS, "embed_positions", "wpe")
BASE_DEFAULTS = {"output_hidden_states": False, "return_dict": True, "chunk_size_feed_forward": 0,
                 "is_encoder_decoder": False, "id2label": {0: "LABEL_0", 1: "LABEL_1"},
                 "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "problem_type": None, "output_attentions": False}


@dataclass(frozen=True)
class Family:
    """Module and parameter names in definition order (siblings compare by position here), the root names a
    tensor name may start with, and whether the block linears are Conv1D (weights stored [in, out])."""

    order: tuple[str, ...]
    roots: tuple[str, ...] = ("model", HEAD)
    conv1d: bool = False


_DECODER = Family(("model", "embed_tokens", "layers", "self_attn", "q_proj", "k_proj", "v_proj", "o_proj", "q_norm",
                   "k_norm", "mlp", "experts", "gate_proj", "up_proj", "down_proj", "gate", "input_layernorm",
                   "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm", "norm",
                   HEAD, "weight", "bias"))
FAMILIES = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "gemma2", "gemma3_text"), _DECODER),
    "phi3": Family(("model", "embed_tokens", "layers", "self_attn", "o_proj", "qkv_proj", "mlp", "gate_up_proj",
                    "down_proj", "input_layernorm", "post_attention_layernorm", "norm", HEAD, "weight", "bias")),
    "opt": Family(("model", "decoder", "embed_tokens", "embed_positions", "self_attn", "k_proj", "v_proj", "q_proj",
                   "out_proj", "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm", "layers", HEAD, "weight",
                   "bias")),
    "gpt2": Family(("transformer", "wte", "wpe", "h", "ln_1", "attn", "c_attn", "ln_2", "mlp", "c_fc", "c_proj",
                    "ln_f", HEAD, "weight", "bias"), roots=("transformer", HEAD), conv1d=True),
}


def _position(key: str, rank: dict[str, int]) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, rank[p]) for p in key.split("."))


def _known(key: str, family: Family, rank: dict[str, int]) -> bool:
    parts = key.split(".")
    return parts[0] in family.roots and all(p.isdigit() or p in rank for p in parts)


def _is_layer(name: str) -> bool:
    leaf = name.rpartition(".")[2]
    return not (leaf in EMBEDDINGS or "norm" in leaf or leaf.startswith("ln_") or leaf == "gate")


def _info(name: str, shape: tuple[int, ...], conv1d: bool) -> LayerInfo:
    parent, _, leaf = name.rpartition(".")
    out_f, in_f = (shape[1], shape[0]) if conv1d else shape
    in_block = block_of(name) is not None
    kind = "expert" if ".experts." in name else "conv1d" if conv1d and in_block else "linear"
    return LayerInfo(name=name, in_features=in_f, out_features=out_f, kind=kind, in_block=in_block,
                     is_router=False, fused_group=f"{parent}.{FUSED[leaf]}" if leaf in FUSED else None)


def describe_headers(ckpt: Checkpoint) -> Layout | None:
    """The layout of `ckpt` from its tensor names and shapes and its family's table, or None when the family is not
    in `FAMILIES` or a stored name is not one the table knows."""
    family = FAMILIES.get(ckpt.config.get("model_type"))
    if family is None:
        return None
    rank = {n: i for i, n in enumerate(family.order)}
    if not all(_known(k, family, rank) for k in ckpt.tensors):
        return None
    order = sorted(ckpt.tensors, key=lambda k: _position(k, rank))
    infos = [_info(k.removesuffix(".weight"), ckpt.tensors[k].shape, family.conv1d and not k.startswith(HEAD))
             for k in order if k.endswith(".weight") and len(ckpt.tensors[k].shape) == 2
             and _is_layer(k.removesuffix(".weight"))]
    tied = f"{HEAD}.weight" not in ckpt.tensors
    if tied:
        embed = next((k for k in order if k.removesuffix(".weight").rpartition(".")[2] in INPUT_EMBEDDINGS), None)
        if embed is None:
            return None
        infos.append(_info(HEAD, ckpt.tensors[embed].shape, False))
    transposed = {x.name for x in infos if x.kind == "conv1d"}
    return Layout(infos, HEAD, tied, transposed, order)


def config_dict(ckpt: Checkpoint) -> dict | None:
    """`AutoConfig.from_pretrained(ckpt.path).to_dict()` without transformers, for a config.json written by the
    installed transformers version; None for any other."""
    raw = ckpt.config
    installed = installed_transformers()
    if installed is None or raw.get("transformers_version") != installed or "auto_map" in raw:
        return None
    out = {**BASE_DEFAULTS, **raw, "_name_or_path": str(ckpt.path)}
    out["id2label"] = {int(k): v for k, v in out["id2label"].items()}  # JSON keys are strings; transformers' ints
    return out


def installed_transformers() -> str | None:
    """The installed transformers version, read from its package metadata (nothing is imported); None if absent."""
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return None
