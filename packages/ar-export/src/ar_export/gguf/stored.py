"""Integer records (`QuantizedTensor`) of the layers of a saved GPTQ-order checkpoint, read without transformers.

Reads what ar, auto-round and GPTQ writers store in GPTQ word order: `qweight` int32 [K*b/32, N], `qzeros` int32
[G, N*b/32] and `scales` [G, N] per layer. The zero-point convention comes from the quantization_config:
`auto_round:auto_gptq` and GPTQ v1 (`quant_method: gptq`) store zero - 1, `auto_round` and `gptq_v2` raw zeros.
Other packings (AWQ GEMM, MX/NV FP, FP8) are refused by name.
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.errors import CheckpointError, field_error
from ar_core.layouts import get_layout
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

GPTQ_ORDER = {"auto_round:auto_gptq": 1, "auto_round": 0}
PACKED = ("qweight", "qzeros", "scales", "g_idx")


def zero_offset(qc: dict[str, Any]) -> int:
    """1 when the checkpoint stores zero - 1 (GPTQ v1), 0 for raw zeros; CheckpointError for other packings."""
    method = str(qc.get("quant_method", "")).lower().replace("_", "-")
    if method == "gptq":
        return 0 if qc.get("checkpoint_format") == "gptq_v2" else 1
    if method == "auto-round":
        packing = qc.get("packing_format") or "auto_round:auto_gptq"
        if packing in GPTQ_ORDER and qc.get("data_type", "int") == "int":
            return GPTQ_ORDER[packing]
        raise field_error(CheckpointError, "quantization_config.packing_format", packing,
                          f"one of {sorted(GPTQ_ORDER)} with int data for GGUF conversion")
    raise field_error(CheckpointError, "quantization_config.quant_method", qc.get("quant_method"),
                      "'auto-round' or 'gptq' for GGUF conversion")


def layer_scheme(qc: dict[str, Any], layer: str) -> QuantScheme:
    """The int scheme of `layer`: the config's bits / group_size / sym, overridden by its extra_config entry."""
    entry = {**qc, **(qc.get("extra_config") or {}).get(layer, {})}
    if entry.get("data_type", "int") != "int":
        raise field_error(CheckpointError, f"data_type of layer {layer!r}", entry.get("data_type"),
                          "'int' for GGUF conversion")
    return QuantScheme(bits=int(entry.get("bits", 4)), group_size=int(entry.get("group_size", 128)),
                       sym=bool(entry.get("sym", True)), data_type="int")


def layer_record(layer: str, tensors: dict[str, torch.Tensor], scheme: QuantScheme, offset: int) -> QuantizedTensor:
    """The record a layer's `qweight` / `qzeros` / `scales` (and optional plain-order `g_idx`) stand for, read by
    the GPTQ layout of `offset` (ar_core.layouts: "gptq" for zero - 1, "gptq_v2" for raw zeros)."""
    groups, n = tensors["scales"].shape
    k = tensors["qweight"].shape[0] * 32 // scheme.bits
    if "g_idx" in tensors:
        k = tensors["g_idx"].numel()
    elif scheme.group_size > 0:
        k = min(k, groups * scheme.group_size)
    return get_layout("gptq" if offset else "gptq_v2").from_tensors(tensors, scheme, k, n, layer)


def split_layers(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """({layer: {qweight, qzeros, scales, g_idx...}}, names of the other tensors) of a checkpoint's tensors."""
    layers = {name[: -len(".qweight")] for name in tensors if name.endswith(".qweight")}
    packed: dict[str, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    plain = []
    for name, t in tensors.items():
        stem, _, leaf = name.rpartition(".")
        if stem in packed and leaf in PACKED:
            packed[stem][leaf] = t
        else:
            plain.append(name)
    for layer, parts in packed.items():
        missing = sorted({"qweight", "qzeros", "scales"} - set(parts))
        if missing:
            raise CheckpointError(f"layer {layer!r} has qweight but no {missing[0]} tensor")
    return packed, plain
