"""Bits-per-weight accounting: code bits and parameter (scale, zero, global scale) bits of a quantized layer.

Each data type declares its parameter bits (`DataType.param_bits`) and the GGUF type it implies (`gguf_types`):
    int                 bits per weight + per group one scale (scale_dtype width) and, when asym, a bits-wide zero
    int_asym_float_zp   bits + per group a scale and a float minimum (scale_dtype width each)
    mx_fp / mx_int      bits + one E8M0 byte per 32 weights
    nv_fp               4 + one E4M3 byte per 16 weights + one float32 global scale per tensor
    fp (FP8)            8 + one scale per tensor / channel / group / 2-D block
    GGUF                the real llama.cpp block size, type_size * 8 / block_size (q4_k: 144 bytes per 256 = 4.5);
                        used when scheme.gguf is set or the data type is a k-quant (*_dq)
    16/32-bit layers    16 or 32, no parameters
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .errors import SchemeError, field_error
from .pack.gguf import CODECS
from .presets import GGUF_MIXES
from .quant.groups import group_count
from .registry import get_data_type
from .scheme import QuantScheme

SCALE_DTYPE_BITS = {"float16": 16, "bfloat16": 16, "float32": 32}


@dataclass(frozen=True)
class LayerBits:
    """Storage of one weight: `elements` weights, `code_bits` for their codes, `param_bits` for everything else."""

    elements: int
    code_bits: int
    param_bits: int

    @property
    def weight_bits(self) -> float:
        """Code bits per weight (scales and zeros not counted)."""
        return self.code_bits / self.elements

    @property
    def total_bits(self) -> float:
        """Bits per weight including scales, zeros and global scales."""
        return (self.code_bits + self.param_bits) / self.elements


def gguf_type(scheme: QuantScheme) -> str | None:
    """The llama.cpp block type a scheme is stored as (None for non-GGUF schemes)."""
    if scheme.gguf is not None:
        key = scheme.gguf.lower().removeprefix("gguf:")
        return GGUF_MIXES.get(key, key)
    return get_data_type(scheme.data_type).gguf_types.get(scheme.bits)


def scale_count(scheme: QuantScheme, shape: tuple[int, int]) -> int:
    """Number of scales (groups) of a layer of `shape` [out, in] under `scheme`."""
    out, cols = shape
    gs = scheme.group_size
    if isinstance(gs, tuple):
        return group_count(out, gs[0]) * group_count(cols, gs[1])
    if gs == 0:
        return 1
    if gs == -1:
        return out
    return out * group_count(cols, min(gs, cols))


def layer_bits(scheme: QuantScheme, shape: tuple[int, int]) -> LayerBits:
    """Code and parameter bits of a weight of `shape` [out, in] quantized with `scheme`."""
    out, cols = shape
    n = out * cols
    if not scheme.is_quantized:
        return LayerBits(n, n * scheme.bits, 0)
    code = n * scheme.bits
    name = gguf_type(scheme)
    if name is not None:
        if name not in CODECS:
            raise field_error(SchemeError, "gguf", scheme.gguf, f"one of {sorted(CODECS)}")
        codec = CODECS[name]
        return LayerBits(n, code, out * group_count(cols, codec.block_size) * codec.type_size * 8 - code)
    groups = scale_count(scheme, shape)
    params = get_data_type(scheme.data_type).param_bits(scheme, groups, SCALE_DTYPE_BITS[scheme.scale_dtype])
    return LayerBits(n, code, params)


def bits_per_weight(scheme: QuantScheme, shape: tuple[int, int], with_params: bool = True) -> float:
    """Bits per weight of one layer, with or without its scale/zero bits."""
    lb = layer_bits(scheme, shape)
    return lb.total_bits if with_params else lb.weight_bits


def average_bits(layers: Iterable[tuple[QuantScheme, tuple[int, int]]], with_params: bool = True) -> float:
    """Bits per weight over many (scheme, shape) layers, weighted by their element counts."""
    total = elements = 0
    for scheme, shape in layers:
        lb = layer_bits(scheme, shape)
        total += lb.code_bits + (lb.param_bits if with_params else 0)
        elements += lb.elements
    if elements == 0:
        raise field_error(SchemeError, "layers", [], "at least one layer with weights")
    return total / elements
