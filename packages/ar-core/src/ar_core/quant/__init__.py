"""Quantize-dequantize math per data type.

    fake_quantize(w, scheme, v=, min_scale=, max_scale=)   differentiable QDQ used by tuners
    quantize(w, scheme, ...) -> QuantizedTensor             integer codes + parameters for exporters and kernels
    dequantize(qt) -> Tensor                                exact inverse: equals fake_quantize with the same inputs

`v` is the learnable rounding offset shaped like the grouped weight [rows, G, group_size]; `min_scale` and
`max_scale` (alpha/beta) are per-group range multipliers shaped [rows, G], clamped to [0, 1]. `search=True` runs
the data type's optimized-RTN parameter search, weighted by `imatrix` (per input channel) when given.
Per-tensor schemes group as [1, 1, out*in] and FP8 2-D blocks as [ceil(out/m), ceil(in/n), m*n]; use
`get_data_type(dt).group(w, scheme)` to get the grouped shape. nv_fp also takes `global_scale=` (e.g. the minimum
over fused q/k/v siblings).
"""

from __future__ import annotations

import torch

from ..qtensor import QuantizedTensor
from ..scheme import QuantScheme
from . import float16, float_zp, fp8, int_types, mx, nvfp  # noqa: F401  (register the data types)
from . import gguf  # noqa: F401  (registers int_asym_dq / int_sym_dq)
from .base import DataType, data_type_names, get_data_type, register_data_type
from .groups import from_groups, group_count, resolve_group_size, to_groups
from .ste import round_ste

__all__ = ["DataType", "data_type_names", "dequantize", "fake_quantize", "from_groups", "get_data_type",
           "group_count", "quantize", "register_data_type", "resolve_group_size", "round_ste", "to_groups"]


def fake_quantize(w: torch.Tensor, scheme: QuantScheme, **kw) -> torch.Tensor:
    """Differentiable quantize-dequantize of a 2-D weight; returns float32 of the same shape."""
    if not scheme.is_quantized:
        return w.float()
    return get_data_type(scheme.data_type).fake(w, scheme, **kw)


def quantize(w: torch.Tensor, scheme: QuantScheme, **kw) -> QuantizedTensor:
    """Quantize a 2-D weight into integer codes and parameters."""
    return get_data_type(scheme.data_type).quantize(w, scheme, **kw)


def dequantize(qt: QuantizedTensor) -> torch.Tensor:
    """Float32 weight of a QuantizedTensor."""
    return get_data_type(qt.scheme.data_type).dequantize(qt)
