"""Turn a checkpoint's quantization config into a per-layer plan: (scheme, on-disk packing) or None (16-bit).

Handles quant_method auto-round (packing_format auto_round:auto_gptq / auto_round / auto_round:gptqmodel /
auto_round:auto_awq / auto_round:llm_compressor / mlx, plus FP8 without a packing_format), gptq, awq,
compressed-tensors (pack-quantized, int-quantized, mxfp4/nvfp4-pack-quantized, float-quantized, mxfp8-quantized) and the mlx
`quantization` dict. `layers` maps every nn.Linear name of the model to (in_features, out_features).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ar_core.errors import CheckpointError, SchemeError
from ar_core.layouts.floats import float_layout
from ar_core.scheme import QuantScheme

from ..qlinear import act

AUTO_ROUND_INT_PACKINGS = {
    "auto_round:auto_gptq": "gptq", "auto_round:gptq": "gptq", "auto_gptq": "gptq",
    "auto_round": "gptq_v2", "auto_round:gptqmodel": "gptq_v2",
    "auto_round:auto_awq": "awq", "auto_awq": "awq",
    "mlx": "mlx", "auto_round:mlx": "mlx",
}
_REGEX_CHARS = set(".*+?[]()^$\\|")
_WEIGHT_KEYS = ("bits", "group_size", "sym", "data_type")
_ACT_KEYS = ("act_bits", "act_group_size", "act_sym", "act_data_type", "act_dynamic")


@dataclass(frozen=True)
class LayerPlan:
    """What the config says about one Linear: its scheme, the packing its tensors are stored in, and how its input
    activations are quantized (None: they stay 16-bit)."""

    scheme: QuantScheme
    packing: str
    act: act.ActSpec | None = None


def _scheme(layer: str, **fields: Any) -> QuantScheme:
    gs = fields.get("group_size", 128)
    if isinstance(gs, list):
        fields["group_size"] = tuple(gs)
    fields["data_type"] = re.sub(r"\d+$", "", str(fields.get("data_type") or "int"))  # "mx_fp4" -> "mx_fp"
    try:
        return QuantScheme(**{k: v for k, v in fields.items() if v is not None})
    except SchemeError as exc:
        raise CheckpointError(f"layer {layer!r}: quantization config gives an invalid scheme ({exc})") from exc


def _matches(pattern: str, name: str) -> bool:
    if pattern == name:
        return True
    return bool(set(pattern) & _REGEX_CHARS) and re.search(pattern, name) is not None


def _in_blocks(name: str, blocks: list[str]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in blocks)


def _block_list(value: Any, default: list[str]) -> list[str]:
    if value is None:
        return default
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    flat: list[str] = []
    for v in value:
        flat.extend(_block_list(v, []))
    return flat


def _auto_round_packing(fmt: str | None, scheme: QuantScheme, layer: str) -> str:
    element = float_layout(scheme)  # the writers' choice for float schemes, whatever the packing_format says
    if element is not None:
        return element.name
    packing = AUTO_ROUND_INT_PACKINGS.get(fmt or "auto_round:auto_gptq")
    if packing is None:
        raise CheckpointError(f"layer {layer!r}: packing_format {fmt!r} is not supported; known: "
                              f"{sorted(AUTO_ROUND_INT_PACKINGS)} and auto_round:llm_compressor")
    return packing


def plan_auto_round(q: dict, layers: dict, blocks: list[str]) -> dict[str, LayerPlan | None]:
    """auto-round: global scheme for layers inside block_name_to_quantize, overridden by extra_config.

    The FP8 block export (§5.7) gives `weight_block_size` (the group) and `ignored_layers` (kept 16-bit).
    """
    base = {k: q.get(k) for k in (*_WEIGHT_KEYS, *_ACT_KEYS)}
    if q.get("weight_block_size"):
        base["group_size"] = list(q["weight_block_size"])
    ignored = set(q.get("ignored_layers") or ())
    blocks = _block_list(q.get("block_name_to_quantize", q.get("to_quant_block_names")), blocks)
    extra = q.get("extra_config") or {}
    inside = _block_list(q.get("modules_in_block_to_quantize"), [])
    plans: dict[str, LayerPlan | None] = {}
    for name in layers:
        fields = dict(base) if _in_blocks(name, blocks) else None
        if fields is not None and inside and not any(_matches(p, name) or p in name for p in inside):
            fields = None
        for key, over in extra.items():
            if _matches(key, name):
                fields = {**(fields or base), **{k: v for k, v in over.items() if k in base and v is not None}}
        if fields is None or name in ignored or int(fields.get("bits") or 16) >= 16:
            plans[name] = None
            continue
        scheme = _scheme(name, **{k: fields.get(k) for k in _WEIGHT_KEYS})
        plans[name] = LayerPlan(scheme, _auto_round_packing(q.get("packing_format"), scheme, name),
                                act.from_auto_round(fields, name))
    return plans


def plan_gptq(q: dict, layers: dict, blocks: list[str]) -> dict[str, LayerPlan | None]:
    """gptq: bits/group_size/sym for block layers (lm_head if lm_head=true), `dynamic` +/- regex overrides."""
    base = {"bits": q.get("bits", 4), "group_size": q.get("group_size", 128), "sym": q.get("sym", True)}
    packing = "gptq_v2" if q.get("checkpoint_format") == "gptq_v2" else "gptq"
    blocks = _block_list(q.get("block_name_to_quantize"), blocks)
    inside = _block_list(q.get("modules_in_block_to_quantize"), [])
    dynamic = q.get("dynamic") or {}
    plans: dict[str, LayerPlan | None] = {}
    for name in layers:
        quantized = _in_blocks(name, blocks) or (name.endswith("lm_head") and bool(q.get("lm_head")))
        if quantized and inside and _in_blocks(name, blocks):
            quantized = any(name.endswith("." + p) or _matches(p, name) for p in inside)
        fields = dict(base)
        for key, over in dynamic.items():
            sign, pattern = (key[0], key[2:]) if key[:2] in ("+:", "-:") else ("+", key)
            if re.search(pattern, name):
                if sign == "-":
                    quantized = False
                else:
                    fields.update({k: v for k, v in over.items() if k in base})
                    quantized = True
        plans[name] = LayerPlan(_scheme(name, **fields), packing) if quantized else None
    return plans


def plan_awq(q: dict, layers: dict, blocks: list[str]) -> dict[str, LayerPlan | None]:
    """awq (GEMM): 4-bit with zero points unless zero_point=false; modules_to_not_convert are kept 16-bit."""
    bits = q.get("bits", q.get("w_bit", 4))
    gs = q.get("group_size", q.get("q_group_size", 128))
    scheme_fields = {"bits": bits, "group_size": gs, "sym": not q.get("zero_point", True)}
    skip = q.get("modules_to_not_convert") or []
    plans: dict[str, LayerPlan | None] = {}
    for name in layers:
        keep = _in_blocks(name, blocks) and not any(s in name or _matches(s, name) for s in skip)
        plans[name] = LayerPlan(_scheme(name, **scheme_fields), "awq") if keep else None
    return plans


def _ct_scheme(layer: str, weights: dict, fmt: str) -> LayerPlan:
    bits, strategy = weights.get("num_bits", 8), weights.get("strategy", "tensor")
    gs = {"group": weights.get("group_size"), "tensor_group": weights.get("group_size"), "channel": -1,
          "tensor": 0, "block": tuple(weights.get("block_structure") or (128, 128))}.get(strategy)
    if gs is None:
        raise CheckpointError(f"layer {layer!r}: compressed-tensors strategy {strategy!r} is not supported")
    if weights.get("type", "int") == "int":
        packing = {"pack-quantized": "pack_quantized", "int-quantized": "int_quantized"}.get(fmt)
        if packing is None:
            raise CheckpointError(f"layer {layer!r}: compressed-tensors format {fmt!r} for int weights is not "
                                  "supported (pack-quantized and int-quantized are)")
        return LayerPlan(_scheme(layer, bits=bits, group_size=gs, sym=weights.get("symmetric", True)), packing)
    if fmt.startswith("nvfp4"):
        return LayerPlan(_scheme(layer, bits=4, group_size=16, data_type="nv_fp"), "nvfp4")
    if fmt.startswith("mxfp"):
        return LayerPlan(_scheme(layer, bits=bits, group_size=32, data_type="mx_fp"), f"mxfp{bits}")
    if fmt == "float-quantized" and bits == 8:
        return LayerPlan(_scheme(layer, bits=8, group_size=gs, data_type="fp"), "fp8")
    raise CheckpointError(f"layer {layer!r}: compressed-tensors format {fmt!r} ({bits}-bit float) is not supported")


def _ct_target(target: str, name: str) -> bool:
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    return target == "Linear" or name == target or name.endswith("." + target)


def plan_compressed_tensors(q: dict, layers: dict, blocks: list[str]) -> dict[str, LayerPlan | None]:
    """compressed-tensors: each config_group's weights scheme on its targets, minus `ignore`."""
    ignore = q.get("ignore") or []
    groups = list((q.get("config_groups") or {}).items())
    plans: dict[str, LayerPlan | None] = {}
    for name in layers:
        plans[name] = None
        if any(_ct_target(t, name) and t != "Linear" for t in ignore):
            continue
        for _, group in groups:
            weights = group.get("weights")
            if weights and any(_ct_target(t, name) for t in group.get("targets", [])):
                fmt = group.get("format") or q.get("format") or "pack-quantized"
                plan = _ct_scheme(name, weights, fmt)
                plans[name] = LayerPlan(plan.scheme, plan.packing,
                                        act.from_compressed_tensors(group.get("input_activations"), name))
                break
    return plans


def plan_mlx(q: dict, layers: dict, blocks: list[str], has_scales: set[str]) -> dict[str, LayerPlan | None]:
    """mlx `quantization`: per-layer dict or false wins; otherwise a layer is quantized when it stores scales."""
    base = {"bits": q.get("bits", 4), "group_size": q.get("group_size", 64)}
    if q.get("mode", "affine") != "affine":
        raise CheckpointError(f"mlx quantization mode {q.get('mode')!r} is not supported (affine is)")
    plans: dict[str, LayerPlan | None] = {}
    for name in layers:
        entry = q.get(name)
        if entry is False or (entry is None and name not in has_scales):
            plans[name] = None
            continue
        fields = {**base, **(entry if isinstance(entry, dict) else {})}
        plans[name] = LayerPlan(_scheme(name, bits=fields["bits"], group_size=fields["group_size"], sym=False),
                                "mlx")
    return plans


def quant_method(q: dict) -> str:
    """Normalized quant_method of a quantization config ("mlx" for an mlx `quantization` dict)."""
    return str(q.get("quant_method", "mlx")).lower().replace("_", "-")


def plan_layers(q: dict, layers: dict, blocks: list[str], has_scales: set[str]) -> dict[str, LayerPlan | None]:
    """Dispatch on quant_method; raises CheckpointError for an unknown method."""
    method = quant_method(q)
    if method in ("auto-round", "autoround"):
        return plan_auto_round(q, layers, blocks)
    if method == "gptq":
        return plan_gptq(q, layers, blocks)
    if method == "awq":
        return plan_awq(q, layers, blocks)
    if method == "compressed-tensors":
        return plan_compressed_tensors(q, layers, blocks)
    if method == "mlx":
        return plan_mlx(q, layers, blocks, has_scales)
    raise CheckpointError(f"quantization_config.quant_method={q.get('quant_method')!r} is not supported; known: "
                          "auto-round, gptq, awq, compressed-tensors, mlx")
