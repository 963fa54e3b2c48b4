"""int_pow2: a toy data type added from outside ar-core, the worked example of docs/extend/data-type.md.

Symmetric int whose per-group scale is rounded up to a power of two, so dequantizing is a shift. Its codes, zero
points and scales are stored exactly like symmetric int, so every int writer and reader handles it unchanged.
"""

import torch

from ar_core.errors import SchemeError, field_error
from ar_core.quant import register_data_type
from ar_core.quant.int_types import IntType


@register_data_type
class IntPow2(IntType):
    """int_pow2: symmetric int with power-of-two scales (shift-only dequantization)."""

    name = "int_pow2"
    bits = (2, 3, 4, 8)  # the widths QuantScheme accepts for data_type="int_pow2"
    checkpoint_name = "int"  # decodes as int: (code - zero) * scale; readers load it as int

    def check(self, scheme):
        """Symmetric only (a power-of-two scale with an integer zero point is not worth a second layout)."""
        super().check(scheme)
        if not scheme.sym:
            raise field_error(SchemeError, "sym", scheme.sym, "True: data_type 'int_pow2' is symmetric only")

    def scale_zero(self, wg, scheme, min_scale=None, max_scale=None):
        """int's signed scale, its magnitude rounded up to a power of two (straight-through for gradients)."""
        scale, zero = super().scale_zero(wg, scheme, min_scale, max_scale)
        pow2 = torch.sign(scale) * torch.exp2(torch.ceil(torch.log2(scale.abs())))
        return scale + (pow2 - scale).detach(), zero

    def tuning_start(self, wg, scheme, imatrix=None):
        """No searched start scale: it would not be a power of two."""
        return {}
