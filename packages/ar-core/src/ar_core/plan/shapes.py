"""Shape rules: which requested schemes a layer's in/out features cannot hold, and what it gets instead."""

from __future__ import annotations

from ..presets import GGUF_ROW_FALLBACK, gguf_scheme
from ..registry import get_data_type
from ..scheme import QuantScheme
from .types import LayerInfo

KEEP_16BIT = QuantScheme(bits=16, data_type="float")


def is_gguf_scheme(s: QuantScheme) -> bool:
    """True for schemes whose storage is a llama.cpp block type (GGUF preset or GGUF-only data type)."""
    return s.gguf is not None or (s.is_quantized and get_data_type(s.data_type).storage_kind(s) == "gguf")


def shape_fallback(layer: LayerInfo, s: QuantScheme, gguf_format: bool) -> tuple[QuantScheme, str] | None:
    """The scheme `layer` gets instead of `s` and why, or None when its shape can hold `s`.

    * GGUF k-quants need in_features % 256 == 0 (one super-block); otherwise q2/q3/q4/q5_k fall back to q5_0 and
      q6_k to q8_0; any GGUF type then needs in_features % 32 == 0, else the layer stays 16-bit (bf16).
    * MX/NV floating point types need in_features % group_size == 0, else weights and activations stay 16-bit.
    * int weight-only schemes (not GGUF format) need in and out features divisible by 32 for packing.
    * a positive group_size larger than in_features becomes one group per output channel (group_size -1).
    The non-GGUF rules are the data type's own (`DataType.shape_fallback`).
    """
    if not s.is_quantized:
        return None
    if is_gguf_scheme(s):
        return _gguf_fallback(layer.in_features, s)
    return get_data_type(s.data_type).shape_fallback(layer.in_features, layer.out_features, s, gguf_format)


def _gguf_fallback(n_in: int, s: QuantScheme) -> tuple[QuantScheme, str] | None:
    name = s.gguf or s.data_type
    reasons = []
    if s.super_group_size is not None and s.group_size > 0:
        block = s.group_size * s.super_group_size
        if n_in % block:
            target = GGUF_ROW_FALLBACK[f"q{s.bits}_k"]
            reasons.append(f"in_features={n_in} not a multiple of {block} ({name} super-block): {target}")
            s = gguf_scheme(target)
    if s.group_size > 0 and n_in % s.group_size:
        reasons.append(f"in_features={n_in} not a multiple of {s.group_size} ({s.gguf or s.data_type}): bf16")
        s = KEEP_16BIT
    return (s, "; ".join(reasons)) if reasons else None
