"""`QuantizedTensor`: the record algorithms produce and exporters and kernels consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .registry import get_data_type
from .scheme import QuantScheme


@dataclass
class QuantizedTensor:
    """Integer (or element) codes plus the parameters that turn them back into weights.

    Conventions (per data type; `out x in` is the original 2-D weight shape, G = number of groups per row):
      int (sym and asym):  codes uint8 [out, in] in [0, 2^bits-1]; scale float32 [out, G] (may be negative for
                           full-range sym); zero int32 [out, G] (2^(bits-1) for sym). w = scale * (codes - zero).
      int_asym_float_zp:   as int but zero is the float minimum m (float32 [out, G]); w = scale * codes + m.
      int_*_dq (GGUF k):   as int/int_asym_float_zp, with scale (and min) already double-quantized; the super-block
                           integers live in `extras` (see ar_core.quant.gguf).
      mx_fp / mx_int:      codes uint8 [out, in] element codes; scale float32 [out, G] powers of two (E8M0).
      nv_fp:               codes uint8 FP4 codes; scale float32 [out, G] values on the E4M3 grid; extras
                           'global_scale' float32 scalar; w = decode(codes) * (scale / global_scale).
      fp (FP8):            codes float8_e4m3fn [out, in]; scale float32 per tensor [1,1], per channel [out,1],
                           per group [out, G] or per block [ceil(out/m), ceil(in/n)].
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    scheme: QuantScheme
    shape: tuple[int, ...]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def out_features(self) -> int:
        """Rows of the original weight."""
        return self.shape[0]

    @property
    def in_features(self) -> int:
        """Columns of the original weight."""
        return self.shape[-1]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight these codes stand for, in `dtype` (its data type's `decode`, found in the registry)."""
        return get_data_type(self.scheme.data_type).dequantize(self).to(dtype)
