"""Checkpoint tensors of one quantized Linear -> the `QuantizedTensor` record (exact integer codes, scales, zeros).

Reads the int layouts: GPTQ order (v1 zero-1 and raw zeros), AWQ GEMM, compressed-tensors pack-quantized and
int-quantized. Used by `convert` to hand a format writer the same records a quantizer would.
"""

from __future__ import annotations

import torch

from ar_core.errors import CheckpointError
from ar_core.pack import awq as awq_codec
from ar_core.qtensor import QuantizedTensor

from .loading import compressed
from .loading.plan import LayerPlan
from .qlinear import TORCH_MODULES

RECORD_PACKINGS = ("gptq", "gptq_v2", "awq", "pack_quantized", "int_quantized")


def _int_record(module, codes_kn: torch.Tensor, zeros_gn: torch.Tensor) -> QuantizedTensor:
    return QuantizedTensor(codes=codes_kn.t().contiguous().to(torch.uint8),
                           scale=module.scales.float().t().contiguous(),
                           zero=zeros_gn.t().contiguous().to(torch.int32), scheme=module.scheme,
                           shape=(module.out_features, module.in_features))


def _gptq_record(module, layer: str) -> QuantizedTensor:
    if module.g_idx is not None:
        plain = torch.arange(module.in_features) // module.group_size
        if not torch.equal(module.g_idx.to(torch.int64).cpu(), plain):
            raise CheckpointError(f"layer {layer!r}: g_idx reorders the input rows (act-order / desc_act); such "
                                  "layers cannot be stored as per-group records")
    return _int_record(module, *module.codes_and_zeros())


def layer_record(name: str, plan: LayerPlan, tensors: dict[str, torch.Tensor], in_features: int,
                 out_features: int) -> QuantizedTensor:
    """The QuantizedTensor a layer's stored tensors stand for (CheckpointError when they do not fit the plan)."""
    if plan.packing == "pack_quantized":
        return compressed.to_quantized(tensors, plan.scheme, in_features, out_features, name)
    if plan.packing == "int_quantized":
        return compressed.int8_to_quantized(tensors, plan.scheme, in_features, out_features, name)
    if plan.packing not in RECORD_PACKINGS:
        raise CheckpointError(f"layer {name!r}: packing {plan.packing!r} cannot be converted; convertible "
                              f"packings: {list(RECORD_PACKINGS)}")
    module = TORCH_MODULES[plan.packing].from_tensors(tensors, in_features, out_features, plan.scheme,
                                                      plan.packing, layer=name)
    if plan.packing == "awq":
        return _int_record(module, awq_codec.unpack(module.qweight), awq_codec.unpack(module.qzeros))
    return _gptq_record(module, name)
