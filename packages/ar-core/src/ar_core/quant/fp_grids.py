"""Element grids of the small float and integer formats (E2M1, E2M3, E4M3, MXINT) and their codes.

A code is sign-magnitude: the magnitude index (the format's exponent and mantissa bits, or |k| for integers) in the
low bits and the sign in the bit above. For the float formats this is the standard OCP bit pattern, e.g. FP4 E2M1
magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6} take indices 0..7 and bit 3 holds the sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .ste import round_ste


@dataclass(frozen=True)
class ElementFormat:
    """A symmetric element grid: `ebits` exponent bits (0 for integers), `mbits` fraction bits, a top magnitude.

    `emax` is the exponent of the largest normal (used by the MX shared-exponent rule); `max_norm` the largest
    magnitude; for integer formats the grid is k * 2^-mbits with |k| * 2^-mbits <= max_norm.
    """

    name: str
    ebits: int
    mbits: int
    emax: int
    max_norm: float

    @property
    def bias(self) -> int:
        """Exponent bias of the float format."""
        return 2 ** (self.ebits - 1) - 1

    @property
    def min_exp(self) -> int:
        """Exponent of the smallest normal; values below it are subnormal (fixed step)."""
        return 1 - self.bias

    @cached_property
    def magnitudes(self) -> torch.Tensor:
        """Every representable magnitude, ascending; the index is the magnitude code."""
        if self.ebits == 0:
            kmax = int(self.max_norm * 2**self.mbits)
            return torch.arange(kmax + 1, dtype=torch.float32) / 2**self.mbits
        vals = []
        for i in range(2 ** (self.ebits + self.mbits)):
            exp_field, man = i >> self.mbits, i & (2**self.mbits - 1)
            if exp_field == 0:
                v = man * 2.0 ** (self.min_exp - self.mbits)
            else:
                v = (1 + man / 2**self.mbits) * 2.0 ** (exp_field - self.bias)
            if v > self.max_norm:
                break
            vals.append(v)
        return torch.tensor(vals, dtype=torch.float32)

    @property
    def sign_bit(self) -> int:
        """Value of the sign bit in a code."""
        if self.ebits == 0:
            return 1 << (int(self.magnitudes.numel() - 1).bit_length())
        return 1 << (self.ebits + self.mbits)


E2M1 = ElementFormat("e2m1", 2, 1, 2, 6.0)
E2M3 = ElementFormat("e2m3", 2, 3, 2, 7.5)
E4M3 = ElementFormat("e4m3", 4, 3, 8, 448.0)
MXINT2 = ElementFormat("int2", 0, 0, 0, 1.0)
MXINT4 = ElementFormat("int4", 0, 2, 0, 1.75)
MXINT8 = ElementFormat("int8", 0, 6, 0, 1.984375)
MX_FP_FORMATS = {4: E2M1, 6: E2M3, 8: E4M3}
MX_INT_FORMATS = {2: MXINT2, 4: MXINT4, 8: MXINT8}


def floor_log2(x: torch.Tensor) -> torch.Tensor:
    """Exact floor(log2(x)) for x > 0 as float32 (0 maps to -1); no gradient."""
    _, ex = torch.frexp(x.detach())
    return (ex - 1).float()


def round_to_grid(x: torch.Tensor, fmt: ElementFormat) -> torch.Tensor:
    """Round to the nearest grid value (ties to even, subnormals included), clamped to +-max_norm.

    Straight-through: the gradient is 1 inside the range. The input should already be clamped to +-max_norm.
    """
    if fmt.ebits == 0:
        step = torch.tensor(2.0**-fmt.mbits)
    else:
        step = torch.exp2(floor_log2(x.abs()).clamp(min=fmt.min_exp) - fmt.mbits)
    q = round_ste(x / step) * step
    return q.clamp(-fmt.max_norm, fmt.max_norm)


def encode_elements(q: torch.Tensor, fmt: ElementFormat) -> torch.Tensor:
    """Codes (uint8) of grid values `q`: magnitude index plus the sign bit for negative values.

    Float formats: with e = max(floor(log2|q|), min_exp), index = |q| / 2^(e - mbits) + (e - min_exp) * 2^mbits
    (the exponent field and mantissa bits); integer formats: |q| * 2^mbits.
    """
    a = q.detach().abs()
    if fmt.ebits == 0:
        idx = a * 2**fmt.mbits
    else:
        e = torch.where(a > 0, floor_log2(a), fmt.min_exp).clamp(min=fmt.min_exp)
        idx = a / torch.exp2(e - fmt.mbits) + (e - fmt.min_exp) * 2**fmt.mbits
    sign = (q.detach() < 0).to(torch.int32) * fmt.sign_bit
    return (idx.to(torch.int32) + sign).to(torch.uint8)


def decode_elements(codes: torch.Tensor, fmt: ElementFormat) -> torch.Tensor:
    """Float32 grid values of codes (inverse of `encode_elements`)."""
    c = codes.to(torch.int64)
    table = fmt.magnitudes.to(codes.device)
    mag = table[c & (fmt.sign_bit - 1)]
    return torch.where((c & fmt.sign_bit) != 0, -mag, mag)


def to_e4m3_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to float8 E4M3FN (clamped to +-448), returned as float32 with a straight-through gradient."""
    q = x.detach().clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float()
    return x + (q - x).detach()
