"""Scheme bookkeeping shared by the writers: the global scheme, block prefixes and per-layer differences.

AutoRound-style configs hold one global scheme plus `extra_config` entries for layers that differ from it; GPTQ
configs hold `dynamic` regex overrides; compressed-tensors holds one `config_group` per distinct scheme.
"""

from __future__ import annotations

import re
from typing import Any

from ar_core.export_request import in_block
from ar_core.registry import get_data_type
from ar_core.scheme import QuantScheme

from .checkpoint import SaveContext

SCHEME_KEYS = ("bits", "group_size", "sym", "data_type", "act_bits", "act_group_size", "act_sym", "act_data_type",
               "act_dynamic", "super_bits", "super_group_size")
FLOAT_ENTRY = {"bits": 16}


def scheme_entry(s: QuantScheme) -> dict[str, Any]:
    """Config keys of a scheme (act_* only when activations are quantized; None values dropped); data_type is the
    name readers know the data type by (`DataType.checkpoint_name`)."""
    d = {**s.to_dict(), "data_type": get_data_type(s.data_type).stored_name()}
    if not s.quantizes_activations:
        d.pop("act_bits", None)
    return {k: d[k] for k in SCHEME_KEYS if k in d}


def layer_schemes(ctx: SaveContext) -> dict[str, QuantScheme]:
    """Scheme per Linear layer of the model; layers without a record get a 16-bit scheme."""
    float_scheme = QuantScheme(bits=16, data_type="float")
    return {n: (ctx.quantized[n].scheme if n in ctx.quantized else float_scheme) for n in ctx.linears}


def quantized_names(ctx: SaveContext) -> list[str]:
    """Layers stored quantized (bits < 16), in model order."""
    return [n for n in ctx.linears if n in ctx.quantized and ctx.quantized[n].scheme.is_quantized]


def blocks(ctx: SaveContext) -> list[str]:
    """Block-list prefixes (e.g. ['model.layers']) that hold quantized layers, as the run's request states them."""
    return list(ctx.request.block_names)


def global_scheme(ctx: SaveContext) -> QuantScheme:
    """The scheme the config states once, as the run's request gives it (ar_core.export_request.common_scheme)."""
    return ctx.request.global_scheme


def differing_layers(ctx: SaveContext) -> dict[str, dict[str, Any]]:
    """AutoRound `extra_config`: quantized layers outside blocks get every key; in-block layers whose scheme
    differs from the global one get the differing keys; in-block 16-bit layers get {'bits': 16}."""
    g = scheme_entry(global_scheme(ctx))
    prefixes = blocks(ctx)
    out: dict[str, dict[str, Any]] = {}
    for name, s in layer_schemes(ctx).items():
        inside = in_block(name, prefixes)
        if not s.is_quantized:
            if inside:
                out[name] = dict(FLOAT_ENTRY)
            continue
        entry = scheme_entry(s)
        if not inside:
            out[name] = entry
            continue
        diff = {k: v for k, v in entry.items() if g.get(k) != v}
        if diff:
            out[name] = diff
    return out


def exact_regex(name: str) -> str:
    """An anchored regex matching exactly the layer `name`."""
    return "^" + re.escape(name) + "$"


def run_knobs(ctx: SaveContext) -> dict[str, Any]:
    """Tuning knobs from run_info for the quantization config (None values and writer options dropped)."""
    return {k: v for k, v in ctx.run_info.items() if v is not None and k not in ("max_shard_size",)}
