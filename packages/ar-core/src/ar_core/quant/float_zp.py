"""int_asym_float_zp (GGUF q4_1 / q5_1): asymmetric groups whose minimum is kept as a float, not rounded.

    m = min(w, 0) * alpha,  scale = (max(w, 0) * beta - m) / (2^b - 1)
    codes = clamp(round((w - m) / scale + v), 0, 2^b - 1),  w ~= scale * codes + m   (zero holds m)
"""

from __future__ import annotations

import torch

from ..errors import SchemeError, field_error
from .base import SCALE_THRESHOLD, DataType, cast_scale, register_data_type
from .int_types import group_range
from .ste import round_ste


@register_data_type
class IntAsymFloatZpType(DataType):
    """int_asym_float_zp: w = scale * codes + m with a float minimum m per group (QuantizedTensor.zero)."""

    name = "int_asym_float_zp"
    bits = (4, 5)  # GGUF q4_1 / q5_1
    kind = "gguf"

    def check(self, scheme):
        """Asymmetric only."""
        super().check(scheme)
        if scheme.sym:
            raise field_error(SchemeError, "sym", scheme.sym, "data_type 'int_asym_float_zp' is asymmetric")

    def param_bits(self, scheme, groups, scale_bits):
        """A scale and a float minimum per group."""
        return groups * 2 * scale_bits

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False):
        wmin, wmax = group_range(wg, min_scale, max_scale)
        maxq = 2**scheme.bits - 1
        scale = cast_scale(((wmax - wmin) / maxq).clamp(min=SCALE_THRESHOLD[scheme.scale_dtype]), scheme)
        m = cast_scale(wmin, scheme)
        x = (wg - m) / scale
        if v is not None:
            x = x + v.reshape(wg.shape)
        codes = torch.clamp(round_ste(x), 0, maxq)
        fake = scale * codes + m
        return codes.detach().to(torch.uint8), scale.detach().squeeze(-1), m.detach().squeeze(-1), {}, fake

    def decode(self, codes_g, scale, zero, extras, scheme):
        return scale.unsqueeze(-1) * codes_g.float() + zero.unsqueeze(-1)
