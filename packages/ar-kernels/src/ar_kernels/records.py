"""Checkpoint tensors of one quantized Linear -> the `QuantizedTensor` record (exact integer codes, scales, zeros).

Reads the int layouts through their `ar_core.layouts` Layout: GPTQ order (v1 zero-1 and raw zeros), AWQ GEMM,
compressed-tensors pack-quantized and int-quantized. Used by `convert` to hand a format writer the same records a quantizer would.
"""

from __future__ import annotations

import torch

from ar_core.errors import CheckpointError
from ar_core.layouts import get_layout
from ar_core.qtensor import QuantizedTensor

from .loading.plan import LayerPlan

RECORD_PACKINGS = ("gptq", "gptq_v2", "awq", "pack_quantized", "int_quantized")


def layer_record(name: str, plan: LayerPlan, tensors: dict[str, torch.Tensor], in_features: int,
                 out_features: int) -> QuantizedTensor:
    """The QuantizedTensor a layer's stored tensors stand for (CheckpointError when they do not fit the plan)."""
    if plan.packing not in RECORD_PACKINGS:
        raise CheckpointError(f"layer {name!r}: packing {plan.packing!r} cannot be converted; convertible "
                              f"packings: {list(RECORD_PACKINGS)}")
    return get_layout(plan.packing).from_tensors(tensors, plan.scheme, in_features, out_features, name)
