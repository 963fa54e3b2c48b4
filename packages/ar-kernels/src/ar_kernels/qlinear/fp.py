"""Floating-point element layouts (compressed-tensors names; the tensors of `ar_core.layouts.floats`): MXFP4,
MXFP8, NVFP4 and FP8 weight + scale.

    mxfp4  weight_packed uint8 [N, K/2] E2M1 nibbles (MXINT4: sign-magnitude k/4 nibbles), weight_scale uint8 E8M0
           [N, K/32]
    mxfp8  weight float8_e4m3fn [N, K], weight_scale uint8 E8M0 [N, K/32]
    nvfp4  weight_packed uint8 [N, K/2], weight_scale float8_e4m3fn [N, K/16], weight_global_scale fp32 [1];
           w = e2m1 * weight_scale / weight_global_scale
    fp8    weight float8_e4m3fn [N, K], weight_scale fp32 per tensor, per channel [N, 1], per group [N, G] or per
           2-D block [ceil(N/m), ceil(K/n)]
"""

from __future__ import annotations

import torch

from ar_core.errors import CheckpointError
from ar_core.layouts import describe
from ar_core.pack import fp4, fp8
from ar_core.quant.fp_grids import MX_INT_FORMATS, decode_elements

from .base import QuantLinear


def expand_groups(scale: torch.Tensor, group: int, in_features: int) -> torch.Tensor:
    """[N, G] per-group values -> [N, in_features] (repeat each group `group` times, crop the padding)."""
    return scale.repeat_interleave(group, dim=1)[:, :in_features]


def expand_fp8_scale(scale: torch.Tensor, scheme, out_features: int, in_features: int) -> torch.Tensor:
    """Broadcastable float32 scale for an FP8 weight from its stored per-tensor/channel/group/block scale."""
    scale = scale.float()
    if scale.numel() == 1:
        return scale.reshape(1, 1)
    if isinstance(scheme.group_size, tuple):
        m, n = scheme.group_size
        return scale.repeat_interleave(m, 0).repeat_interleave(n, 1)[:out_features, :in_features]
    if scale.shape in ((out_features, 1), (out_features,)):  # per channel ([N] in auto-round's FP8 layout)
        return scale.reshape(out_features, 1)
    return expand_groups(scale, scheme.effective_group_size(in_features), in_features)


class MXFP4Linear(QuantLinear):
    """MXFP4 (and MXINT4): E2M1 (or sign-magnitude int) nibbles with an E8M0 exponent per 32 inputs."""

    packings = ("mxfp4",)
    group = 32

    def __init__(self, in_features, out_features, scheme, packing, weight_packed, weight_scale, bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        self.register_buffer("weight_packed", weight_packed)
        self.register_buffer("weight_scale", weight_scale)

    def dequantize_weight(self) -> torch.Tensor:
        codes = fp4.unpack_nibbles(self.weight_packed, self.in_features)
        if self.scheme.data_type == "mx_int":
            values = decode_elements(codes, MX_INT_FORMATS[4])
        else:
            values = fp4.decode_e2m1(codes)
        return values * expand_groups(fp4.e8m0_decode(self.weight_scale), self.group, self.in_features)

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="mxfp4", layer="?"):
        t = cls._read(tensors, in_features, out_features, scheme, packing, layer)
        return cls(in_features, out_features, scheme, "mxfp4", t["weight_packed"], t["weight_scale"],
                   tensors.get("bias"))


class MXFP8Linear(QuantLinear):
    """MXFP8: float8_e4m3fn elements with an E8M0 exponent per 32 inputs."""

    packings = ("mxfp8",)
    group = 32

    def __init__(self, in_features, out_features, scheme, packing, weight, weight_scale, bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale)

    def dequantize_weight(self) -> torch.Tensor:
        scale = expand_groups(fp4.e8m0_decode(self.weight_scale), self.group, self.in_features)
        return self.weight.float() * scale

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="mxfp8", layer="?"):
        t = cls._read(tensors, in_features, out_features, scheme, packing, layer)
        return cls(in_features, out_features, scheme, "mxfp8", t["weight"], t["weight_scale"], tensors.get("bias"))


class NVFP4Linear(QuantLinear):
    """NVFP4: E2M1 nibbles, an E4M3 scale per 16 inputs and a per-tensor global scale (divided out)."""

    packings = ("nvfp4",)
    group = 16

    def __init__(self, in_features, out_features, scheme, packing, weight_packed, weight_scale, weight_global_scale,
                 bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        self.register_buffer("weight_packed", weight_packed)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("weight_global_scale", weight_global_scale)

    def dequantize_weight(self) -> torch.Tensor:
        codes = fp4.unpack_nibbles(self.weight_packed, self.in_features)
        if self.scheme.data_type == "mx_int":
            values = decode_elements(codes, MX_INT_FORMATS[4])
        else:
            values = fp4.decode_e2m1(codes)
        scale = expand_groups(fp8.decode_e4m3_scale(self.weight_scale), self.group, self.in_features)
        return values * scale / self.weight_global_scale.float().reshape(())

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="nvfp4", layer="?"):
        t = cls._read(tensors, in_features, out_features, scheme, packing, layer)
        return cls(in_features, out_features, scheme, "nvfp4", t["weight_packed"], t["weight_scale"],
                   t["weight_global_scale"].float().reshape(1), tensors.get("bias"))


class FP8Linear(QuantLinear):
    """FP8 weight-only: float8_e4m3fn weight times a per-tensor/channel/group/block scale."""

    packings = ("fp8",)

    def __init__(self, in_features, out_features, scheme, packing, weight, weight_scale, bias=None):
        super().__init__(in_features, out_features, scheme, packing, bias)
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale)

    def dequantize_weight(self) -> torch.Tensor:
        scale = expand_fp8_scale(self.weight_scale, self.scheme, self.out_features, self.in_features)
        return self.weight.float() * scale

    @classmethod
    def from_tensors(cls, tensors, in_features, out_features, scheme, packing="fp8", layer="?"):
        t = cls._read(tensors, in_features, out_features, scheme, packing, layer)
        ws = t["weight_scale"]
        try:
            expand_fp8_scale(ws, scheme, out_features, in_features).expand(out_features, in_features)
        except RuntimeError as exc:
            raise CheckpointError(f"layer {layer!r}: weight_scale of shape {list(ws.shape)} does not fit a "
                                  f"[{out_features}, {in_features}] weight{describe(scheme)}") from exc
        return cls(in_features, out_features, scheme, "fp8", t["weight"], ws, tensors.get("bias"))
