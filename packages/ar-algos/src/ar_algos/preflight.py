"""Checks that need no weights, run before a model is loaded (a typo must not cost the minutes a big model takes
to load): the layer_config / ignore_layers patterns against the layer names, every format against the planned
schemes, and the calibration dataset.

    check_before_loading("path/to/model", parse_scheme("NVFP4"), formats=["auto_gptq"])   # SchemeError, at once

Layer names come from the model built on the meta device from config.json (no weights, no memory, never the
model's own code); a model transformers cannot build that way is checked once it is loaded instead.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from ar_core.layer_config import LayerInfo, Plan, resolve_plan
from ar_core.registry import FORMATS
from ar_core.scheme import QuantScheme

from .data import check_dataset

log = logging.getLogger("ar_algos.preflight")


@functools.lru_cache(maxsize=4)
def _meta_layers(config_file: str, mtime: float) -> tuple[tuple[LayerInfo, ...], str | None, bool] | None:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from .blocks import find_blocks, find_lm_head, has_tied_head
    from .moe import unfuse_experts
    from .plan import layer_infos

    try:
        config = AutoConfig.from_pretrained(Path(config_file).parent, trust_remote_code=False)
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        unfuse_experts(model)
        blocks = find_blocks(model)
    except Exception as exc:  # unknown architecture, custom code, no blocks: the loaded model is checked instead
        log.debug("preflight: no meta model for %s (%s)", config_file, exc)
        return None
    return tuple(layer_infos(model, blocks)), find_lm_head(model, blocks), has_tied_head(model)


def meta_layers(model_dir: str | os.PathLike) -> tuple[tuple[LayerInfo, ...], str | None, bool] | None:
    """(layer infos, LM head name, tied head) of the model in `model_dir` built on the meta device; None when it is
    not a local model directory or transformers cannot build it without running the model's own code."""
    config = Path(model_dir).expanduser() / "config.json"
    try:
        mtime = config.stat().st_mtime
    except (OSError, ValueError):
        return None
    return _meta_layers(str(config.absolute()), mtime)


def plan_notes(layers: list[LayerInfo] | tuple[LayerInfo, ...], plan: Plan) -> list[str]:
    """Lines telling what happens to the layers the asked schemes cannot serve as asked: those that fell back
    (16-bit, one group per channel, another GGUF type) and those whose in_features the group size does not divide
    (their last group per row is shorter)."""
    notes = []
    if plan.fallbacks:
        name, reason = plan.fallbacks[0]
        notes.append(f"{len(plan.fallbacks)} layer(s) cannot take the scheme asked for them, e.g. {name}: {reason}")
    quantized = [x for x in layers if plan.entries[x.name].scheme.is_quantized]
    uneven = [x for x in quantized if plan.entries[x.name].source != "fallback" and not plan.entries[x.name].scheme.gguf
              and isinstance(gs := plan.entries[x.name].scheme.group_size, int) and gs > 0 and x.in_features % gs]
    if uneven:
        x, gs = uneven[0], plan.entries[uneven[0].name].scheme.group_size
        fits = [g for g in (128, 64, 32) if all(y.in_features % g == 0 for y in quantized)]
        notes.append(f"group_size={gs} does not divide in_features of {len(uneven)} of the {len(quantized)} quantized "
                     f"layers (e.g. {x.name}: in_features={x.in_features} = {x.in_features // gs} x {gs} + "
                     f"{x.in_features % gs}): the last group of each row holds the remaining columns (zero-padded "
                     "while quantizing)" + (f"; group_size={fits[0]} divides every layer" if fits else ""))
    return notes


def check_before_loading(model: Any, scheme: QuantScheme, formats: list[str] | None = None,
                         layer_config: Any = None, ignore_layers: Any = None, quant_lm_head: bool = False,
                         dataset: Any = None) -> None:
    """Raise the ArError that loading `model` (a local directory; anything else is skipped) would end in for a bad
    layer_config / ignore_layers entry, a format (of `formats`) that cannot hold a planned scheme, or a bad dataset
    spec or file (`dataset`; pass None when the run uses no calibration data)."""
    if dataset is not None:
        check_dataset(dataset)
    if not isinstance(model, (str, os.PathLike)):
        return
    described = meta_layers(model)
    if described is None:
        return
    layers, lm_head, tied = described
    plan = resolve_plan(list(layers), scheme=scheme, layer_config=layer_config, ignore_layers=ignore_layers,
                        quant_lm_head=quant_lm_head, tied_embeddings=tied, lm_head_name=lm_head,
                        format=formats[0].lower() if formats else None)
    schemes = {n: s for n, s in plan.schemes().items() if s.is_quantized}
    for name in formats or ():
        FORMATS.get(name.split(":")[0].lower()).check(schemes)
