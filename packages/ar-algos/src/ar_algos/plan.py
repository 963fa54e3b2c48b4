"""Describe a model's weight layers to `ar_core.layer_config.resolve_plan` and get every layer's scheme."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.pytorch_utils import Conv1D

from ar_core.layer_config import LayerInfo, Plan, resolve_plan
from ar_core.presets import parse_scheme
from ar_core.registry import FORMATS
from ar_core.scheme import QuantScheme

from .blocks import find_linears, has_tied_head, is_router, weight_of
from .moe import UnfusedExperts

_FUSED = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}


def layer_infos(model: nn.Module, block_names: list[str]) -> list[LayerInfo]:
    """One LayerInfo per Linear/Conv1D of `model`, in model order."""
    experts = {name for name, m in model.named_modules() if isinstance(m, UnfusedExperts)}
    infos = []
    for name, layer in find_linears(model).items():
        out_f, in_f = weight_of(layer).shape
        parent, _, leaf = name.rpartition(".")
        kind = "expert" if any(name.startswith(e + ".") for e in experts) else (
            "conv1d" if isinstance(layer, Conv1D) else "linear")
        infos.append(LayerInfo(name=name, in_features=in_f, out_features=out_f, kind=kind,
                               in_block=any(name.startswith(b + ".") for b in block_names),
                               is_router=is_router(name),
                               fused_group=f"{parent}.{_FUSED[leaf]}" if leaf in _FUSED else None))
    return infos


def gguf_rules(model: nn.Module, scheme: Any) -> dict[str, QuantScheme]:
    """Layer name -> scheme that a GGUF mix scheme's llama.cpp per-tensor rules give it (attn_v / ffn_down / output
    upgrades), asked of the gguf format's own planner so the tuned records are what write_gguf stores; {} for other
    schemes. Needs the gguf exporter (`pip install 'ar-export[gguf]'`)."""
    mix = parse_scheme(scheme).gguf
    return dict(FORMATS.get("gguf").layer_rules(model, mix)) if mix else {}


def build_plan(model: nn.Module, block_names: list[str], lm_head: str | None, scheme: Any,
               layer_config: dict | None, ignore_layers: Any, quant_lm_head: bool, format: str | None) -> Plan:
    """Resolve the scheme of every weight layer of `model` (raises LayerConfigError on bad configs); a GGUF mix
    scheme starts from its per-tensor rules (`gguf_rules`)."""
    return resolve_plan(layer_infos(model, block_names), scheme=scheme, layer_config=layer_config,
                        ignore_layers=ignore_layers, quant_lm_head=quant_lm_head, tied_embeddings=has_tied_head(model),
                        lm_head_name=lm_head, format=format, rule_schemes=gguf_rules(model, scheme))
