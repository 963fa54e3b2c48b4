"""Floating-point element packings (compressed-tensors names).

    mxfp4  weight_packed uint8 [N, K/2] E2M1 nibbles (MXINT4: sign-magnitude nibbles), weight_scale uint8 E8M0
           [N, K/32]
    mxfp8  weight float8_e4m3fn [N, K], weight_scale uint8 E8M0 [N, K/32]
    nvfp4  weight_packed uint8 [N, K/2], weight_scale float8_e4m3fn [N, K/16], weight_global_scale fp32 [1], and
           input_global_scale fp32 [1] when activations are quantized; w = e2m1 * weight_scale / weight_global_scale
    fp8    weight float8_e4m3fn [N, K] and its multiplier (weight_scale or weight_scale_inv) per tensor, channel,
           group or 2-D block
"""

from __future__ import annotations

import torch

from ..pack import fp4, fp8
from ..qtensor import QuantizedTensor
from .base import Layout, Shapes, describe, expect, register_layout

_SCALE_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


class _Elements(Layout):
    """A layout for one set of data types at one bit width."""

    data_types: tuple[str, ...] = ()
    bits = 0

    def refusal(self, scheme, in_features, out_features):
        if scheme.data_type not in self.data_types or scheme.bits != self.bits:
            return f"holds {'/'.join(self.data_types)} {self.bits}-bit"
        return None


class MXFP4Layout(_Elements):
    """MXFP4 and MXINT4: two 4-bit codes per byte, an E8M0 exponent per 32 inputs."""

    name, stores, data_types, bits = "mxfp4", "weight_packed", ("mx_fp", "mx_fp_rceil", "mx_int"), 4

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        return {"weight_packed": ((out_features, -(-in_features // 2)), (torch.uint8,)),
                "weight_scale": ((out_features, -(-in_features // 32)), (torch.uint8,))}

    def to_tensors(self, qt: QuantizedTensor) -> dict[str, torch.Tensor]:
        """weight_packed nibbles and E8M0 weight_scale."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        return {"weight_packed": fp4.pack_nibbles(qt.codes), "weight_scale": fp4.e8m0_encode(qt.scale)}

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        t = self.read(tensors, scheme, in_features, out_features, layer)
        return QuantizedTensor(codes=fp4.unpack_nibbles(t["weight_packed"], in_features),
                               scale=fp4.e8m0_decode(t["weight_scale"]), zero=None, scheme=scheme,
                               shape=(out_features, in_features))


class MXFP8Layout(_Elements):
    """MXFP8: float8_e4m3fn elements, an E8M0 exponent per 32 inputs."""

    name, stores, data_types, bits = "mxfp8", "float8", ("mx_fp", "mx_fp_rceil"), 8

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        return {"weight": ((out_features, in_features), (torch.float8_e4m3fn,)),
                "weight_scale": ((out_features, -(-in_features // 32)), (torch.uint8,))}

    def to_tensors(self, qt: QuantizedTensor) -> dict[str, torch.Tensor]:
        """weight float8 (from float8 codes or their uint8 bit patterns) and E8M0 weight_scale."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        return {"weight": fp8.to_float8(qt.codes), "weight_scale": fp4.e8m0_encode(qt.scale)}

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        t = self.read(tensors, scheme, in_features, out_features, layer)
        return QuantizedTensor(codes=fp8.to_bits(t["weight"]), scale=fp4.e8m0_decode(t["weight_scale"]), zero=None,
                               scheme=scheme, shape=(out_features, in_features))


class NVFP4Layout(_Elements):
    """NVFP4: E2M1 nibbles, an E4M3 scale per 16 inputs, a per-tensor global scale."""

    name, stores, data_types, bits = "nvfp4", "weight_packed", ("nv_fp",), 4

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        return {"weight_packed": ((out_features, -(-in_features // 2)), (torch.uint8,)),
                "weight_scale": ((out_features, -(-in_features // 16)), (torch.float8_e4m3fn,)),
                "weight_global_scale": (None, None)}

    def to_tensors(self, qt: QuantizedTensor,
                   input_global_scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """weight_packed, E4M3 weight_scale, weight_global_scale (extras['global_scale']) and, when given,
        input_global_scale."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        gs = torch.as_tensor(qt.extras["global_scale"], dtype=torch.float32).reshape(1)
        out = {"weight_packed": fp4.pack_nibbles(qt.codes), "weight_scale": fp8.encode_e4m3_scale(qt.scale),
               "weight_global_scale": gs}
        if input_global_scale is not None:
            out["input_global_scale"] = input_global_scale.reshape(1).to(torch.float32)
        return out

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        t = self.read(tensors, scheme, in_features, out_features, layer)
        return QuantizedTensor(codes=fp4.unpack_nibbles(t["weight_packed"], in_features),
                               scale=fp8.decode_e4m3_scale(t["weight_scale"]), zero=None, scheme=scheme,
                               shape=(out_features, in_features),
                               extras={"global_scale": t["weight_global_scale"].float().reshape(())})


class FP8Layout(_Elements):
    """FP8 weight and its float multiplier, stored as weight_scale (or weight_scale_inv, the FP8 block export)."""

    name, stores, data_types, bits = "fp8", "float8", ("fp",), 8

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        return {"weight": ((out_features, in_features), (torch.float8_e4m3fn,))}

    def read(self, tensors, scheme, in_features, out_features, layer="?"):
        """The checked weight and its scale, under the name `weight_scale` whichever name it was stored as."""
        out = super().read(tensors, scheme, in_features, out_features, layer)
        name = "weight_scale" if "weight_scale" in tensors else "weight_scale_inv"
        out["weight_scale"] = expect(layer, tensors, name, None, _SCALE_FLOATS, describe(scheme))
        return out

    def to_tensors(self, qt: QuantizedTensor, scale_dtype: torch.dtype = torch.float32,
                   scale_name: str = "weight_scale",
                   scale_shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
        """weight float8 and the record's scale in `scale_dtype` under `scale_name`, reshaped to `scale_shape`."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        scale = qt.scale.to(scale_dtype)
        if scale_shape is not None:
            scale = scale.reshape(scale_shape)
        return {"weight": fp8.to_float8(qt.codes), scale_name: scale}

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        """The record: float8 codes; the scale as [1, 1] per tensor, [N, 1] per channel, else as stored."""
        t = self.read(tensors, scheme, in_features, out_features, layer)
        scale = t["weight_scale"].float()
        if scale.numel() == 1:
            scale = scale.reshape(1, 1)
        elif scale.dim() == 1:
            scale = scale.reshape(out_features, 1)
        return QuantizedTensor(codes=t["weight"], scale=scale, zero=None, scheme=scheme,
                               shape=(out_features, in_features))


MXFP4 = register_layout(MXFP4Layout())
MXFP8 = register_layout(MXFP8Layout())
NVFP4 = register_layout(NVFP4Layout())
FP8 = register_layout(FP8Layout())


def float_layout(scheme) -> Layout | None:
    """The element layout of a float scheme: fp8 for FP8, mxfp4/mxfp8 for MX by width (MXINT4 shares mxfp4's
    nibbles), nvfp4 for NV FP; None for other data types."""
    if scheme.data_type == "fp" and scheme.bits == 8:
        return FP8
    if scheme.data_type.startswith("mx_"):
        return MXFP4 if scheme.bits == 4 else MXFP8
    return NVFP4 if scheme.data_type == "nv_fp" else None
