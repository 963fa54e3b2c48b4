"""What `load` would do, without loading weights: per-layer scheme, packing and backend choice (`ar inspect`), and
the backend capability table (`ar list backends`).

    rows = ar_kernels.explain("out/model", device="cpu")      # reads config.json and safetensors headers only
    rows[0] -> {"layer": "model.layers.0.self_attn.q_proj", "scheme": "int 4-bit g128 sym", "packing": "gptq",
                "backend": "torch", "reason": "...", "rejected": {"triton": "device 'cpu' needs ..."}, ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ar_core.errors import CheckpointError, PluginError
from ar_core.remote_code import remote_code_guard
from ar_core.scheme import QuantScheme

from .backends import list_backends, select_backend
from .backends.base import device_type
from .loading.checkpoint import CheckpointReader
from .loading.load import find_blocks, meta_skeleton, resolve_device
from .loading.plan import LayerPlan, plan_layers

# on-disk packings that `load` serves through another layout (compressed-tensors ints -> GPTQ order, raw zeros)
_SERVED_AS = {"pack_quantized": "gptq_v2", "int_quantized": "gptq_v2"}


def scheme_summary(scheme: QuantScheme) -> str:
    """'int 4-bit g128 sym', 'mx_fp 4-bit g32', 'fp 8-bit per-channel' ..."""
    gs = scheme.group_size
    group = {0: "per-tensor", -1: "per-channel"}.get(gs) if not isinstance(gs, tuple) else None
    group = group or (f"block{list(gs)}" if isinstance(gs, tuple) else f"g{gs}")
    sym = "" if scheme.data_type != "int" else (" sym" if scheme.sym else " asym")
    return f"{scheme.data_type} {scheme.bits}-bit {group}{sym}"


def _source(path_or_config, trust_remote_code: bool) -> tuple[Any, dict, list[str]]:
    """(transformers config, quantization dict, tensor names from the safetensors headers)."""
    from transformers import AutoConfig

    if isinstance(path_or_config, dict):
        raw = dict(path_or_config)
        if "model_type" not in raw:
            raise CheckpointError("explain(config): the config dict has no 'model_type' (pass config.json's content)")
        names: list[str] = []
        config = AutoConfig.for_model(raw.pop("model_type"), **raw)
    else:
        path = Path(path_or_config)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"explain: {str(path)!r} has no config.json")
        raw = json.loads((path / "config.json").read_text())
        with remote_code_guard(path, trust_remote_code):
            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        has_weights = any(path.glob("*.safetensors"))
        names = CheckpointReader(path).keys() if has_weights else []
    q = raw.get("quantization_config") or raw.get("quantization")
    if not isinstance(q, dict):
        raise CheckpointError("explain: config.json has no quantization_config (or mlx quantization) dict")
    return config, q, names


def _rejections(scheme, packing, device, in_f, out_f, dtype, backend, chosen) -> dict[str, str]:
    out = {}
    auto = backend in (None, "auto")
    for b in list_backends():
        if chosen is not None and b.name == chosen.name:
            continue
        why = b.unsupported(scheme, packing, device, in_f, out_f, dtype)
        if not why and not auto and b.name != backend:
            why = f"backend={backend!r} was asked for"
        elif not why and auto and not b.auto_selectable(device):
            why = f"runs on {device} only when asked for by name (backend={b.name!r})"
        elif not why and not b.is_installed():
            why = f"not installed (`{b.install}`)"
        elif not why:
            why = f"capable, lower priority ({b.priority} < {chosen.priority})"
        out[b.name] = why
    return out


def _layer_row(name: str, plan: LayerPlan | None, shape: tuple[int, int], stored: list[str], device: str,
               dtype: torch.dtype, backend: str | None) -> dict[str, Any]:
    in_f, out_f = shape
    row: dict[str, Any] = {"layer": name, "in_features": in_f, "out_features": out_f, "tensors": stored,
                           "quantized": plan is not None}
    if plan is None:
        return {**row, "scheme": "16-bit", "packing": None, "backend": None,
                "reason": "kept in 16 bits by the quantization config", "rejected": {}}
    served = _SERVED_AS.get(plan.packing, plan.packing)
    scheme = plan.scheme.replace(bits=8) if plan.packing == "int_quantized" else plan.scheme
    try:
        chosen, reason = select_backend(scheme, served, device, in_f, out_f, backend, layer=name, dtype=dtype)
    except PluginError as exc:
        chosen, reason = None, str(exc)
    return {**row, "scheme": scheme_summary(plan.scheme), "bits": scheme.bits, "group_size": scheme.group_size,
            "sym": scheme.sym, "data_type": scheme.data_type, "packing": plan.packing, "served_as": served,
            "backend": None if chosen is None else chosen.name, "reason": reason,
            "rejected": _rejections(scheme, served, device, in_f, out_f, dtype, backend, chosen)}


def explain(path_or_config, device: str | torch.device = "cpu", backend: str | None = None,
            dtype: torch.dtype | None = None, trust_remote_code: bool = False) -> list[dict[str, Any]]:
    """One row per Linear layer: scheme summary, on-disk packing, chosen backend, reason, rejected backends.

    `path_or_config` is a checkpoint directory (config.json and safetensors headers are read, no tensor data) or
    the config.json dict. The skeleton model is built on the meta device. Rows of layers with no backend carry
    backend None and the selection error as reason; unquantized layers have quantized False. The model's own code
    (config.json auto_map) runs only with `trust_remote_code=True`.
    """
    config, q, names = _source(path_or_config, trust_remote_code)
    model = meta_skeleton(config, trust_remote_code)
    device = device_type(resolve_device(device))
    dtype = dtype or next(p.dtype for p in model.parameters() if p.is_floating_point())
    linears = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    has_scales = {k.rpartition(".")[0] for k in names if k.endswith(".scales")}
    plans = plan_layers(q, linears, find_blocks(model), has_scales)
    by_layer: dict[str, list[str]] = {}
    for k in names:
        by_layer.setdefault(k.rpartition(".")[0], []).append(k.rpartition(".")[2])
    return [_layer_row(name, plans.get(name), shape, sorted(by_layer.get(name, [])), device, dtype, backend)
            for name, shape in linears.items()]


def backend_table() -> list[dict[str, Any]]:
    """One row per backend (highest priority first) for `ar list backends`."""
    rows = []
    for b in list_backends():
        rows.append({"name": b.name, "priority": b.priority, "devices": list(b.devices),
                     "auto_devices": list(b.devices if b.auto_devices is None else b.auto_devices),
                     "data_types": list(b.data_types), "bits": list(b.bits),
                     "group_sizes": None if b.group_sizes is None else list(b.group_sizes),
                     "sym": list(b.sym), "packings": list(b.packings),
                     "dtypes": [str(d).removeprefix("torch.") for d in b.dtypes],
                     "installed": b.is_installed(), "install": b.install, "description": b.description})
    return rows
