"""compressed-tensors int weights -> QuantizedTensor (then served as GPTQ-order raw zeros).

pack-quantized: weight_packed int32 [N, ceil(K*bits/32)], a dense LSB-first bit stream along K of the codes offset
by 2^(bits-1) (i.e. unsigned codes); weight_zero_point (asym) is packed the same way along N: [ceil(N*bits/32), G].
int-quantized (W8A8): weight int8 [N, K] holding q - zero, weight_scale [N, G], optional int8 weight_zero_point.
"""

from __future__ import annotations

import torch

from ar_core.errors import CheckpointError
from ar_core.pack.bitstream import unpack_last
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

from ..qlinear.base import describe, expect


def _unpack_dense(words: torch.Tensor, bits: int, length: int) -> torch.Tensor:
    pad = -words.shape[-1] % bits if 32 % bits else 0
    if pad:
        words = torch.nn.functional.pad(words, (0, pad))
    return unpack_last(words, bits, length)


def _scale(tensors: dict, scheme: QuantScheme, in_features: int, out_features: int, layer: str) -> torch.Tensor:
    what = describe(scheme)
    groups = 1 if scheme.group_size in (0, -1) else -(-in_features // scheme.effective_group_size(in_features))
    scale = expect(layer, tensors, "weight_scale", None, None, what).float()
    if scheme.group_size == 0:
        return scale.reshape(1, 1)
    if tuple(scale.shape) != (out_features, groups):
        raise CheckpointError(f"layer {layer!r}: weight_scale has shape {list(scale.shape)} but the quantization "
                              f"config ({what.strip('; ')}) implies {[out_features, groups]}")
    return scale


def to_quantized(tensors: dict, scheme: QuantScheme, in_features: int, out_features: int,
                 layer: str) -> QuantizedTensor:
    """Read a pack-quantized layer into int codes, scales and zero points (CheckpointError on any mismatch)."""
    bits, what = scheme.bits, describe(scheme)
    words = -(-in_features * bits // 32)
    packed = expect(layer, tensors, "weight_packed", (out_features, words), (torch.int32,), what)
    if "weight_shape" in tensors and [int(v) for v in tensors["weight_shape"]] != [out_features, in_features]:
        raise CheckpointError(f"layer {layer!r}: weight_shape {tensors['weight_shape'].tolist()} != model's "
                              f"[{out_features}, {in_features}]")
    scale = _scale(tensors, scheme, in_features, out_features, layer)
    if scheme.sym:
        zero = torch.full(scale.shape, 1 << (bits - 1), dtype=torch.int32)
    else:
        zp = expect(layer, tensors, "weight_zero_point", None, (torch.int32,), what)
        zero = _unpack_dense(zp.t(), bits, scale.shape[0]).t().to(torch.int32)
    codes = _unpack_dense(packed, bits, in_features).to(torch.uint8)
    return QuantizedTensor(codes=codes, scale=scale, zero=zero, scheme=scheme, shape=(out_features, in_features))


def int8_to_quantized(tensors: dict, scheme: QuantScheme, in_features: int, out_features: int,
                      layer: str) -> QuantizedTensor:
    """Read an int-quantized layer as 8-bit codes (weight + 128) with zero 128 (+ the stored zero point)."""
    weight = expect(layer, tensors, "weight", (out_features, in_features), (torch.int8,), describe(scheme))
    scale = _scale(tensors, scheme, in_features, out_features, layer)
    zero = torch.full(scale.shape, 128, dtype=torch.int32)
    if "weight_zero_point" in tensors:
        zero = zero + tensors["weight_zero_point"].to(torch.int32).reshape(scale.shape)
    codes = (weight.to(torch.int32) + 128).to(torch.uint8)
    container = scheme.replace(bits=8, sym=scheme.sym and "weight_zero_point" not in tensors)
    return QuantizedTensor(codes=codes, scale=scale, zero=zero, scheme=container, shape=(out_features, in_features))
