"""MX formats (OCP microscaling): a shared E8M0 power-of-two scale per 32 elements and FP4/FP6/FP8 or INT elements.

    mx_fp        e = floor(log2(amax * beta)) - emax          (AutoRound's rule; amax 0 counts as log2 = 1)
    mx_fp_rceil  e = ceil(log2(amax * beta / max_norm))       (NVIDIA's rule; amax 0 gives e = 1)
    mx_int       as mx_fp with emax 0 and the grid k * 2^-(bits-2) (MXINT4: k/4, |k| <= 7), sign-magnitude codes

e is clamped to [-127, 127]; each element is round(w / 2^e + v) on the element grid (ties to even, subnormals),
clamped to +-max_norm. The stored scale is 2^e as float32 (exporters write uint8(e + 127)).
"""

from __future__ import annotations

import torch

from ..scheme import QuantScheme
from .base import DataType, expand_minmax, register_data_type
from .fp_grids import MX_FP_FORMATS, MX_INT_FORMATS, ElementFormat, decode_elements, encode_elements, \
    floor_log2, round_to_grid

E8M0_MAX_EXP = 127


def _ceil_log2(x: torch.Tensor) -> torch.Tensor:
    """Exact ceil(log2(x)) for x > 0; no gradient."""
    mant, ex = torch.frexp(x.detach())
    return torch.where(mant == 0.5, ex - 1, ex).float()


def shared_exponent(amax: torch.Tensor, fmt: ElementFormat, rceil: bool = False) -> torch.Tensor:
    """Shared exponent per group, clamped to [-127, 127] (exact forward value, gradient through log2(amax))."""
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    if rceil:
        ratio = safe / fmt.max_norm
        log = torch.log2(ratio)
        e = log + (_ceil_log2(ratio) - log).detach()
        e = torch.where(amax > 0, e, torch.ones_like(e))
    else:
        log = torch.log2(safe)
        e = log + (floor_log2(safe) - log).detach()
        e = torch.where(amax > 0, e, torch.ones_like(e)) - fmt.emax
    return e.clamp(-E8M0_MAX_EXP, E8M0_MAX_EXP)


def quantize_elements(wg: torch.Tensor, scale: torch.Tensor, fmt: ElementFormat, v=None) -> torch.Tensor:
    """Grid values of wg / scale (+ v), clamped to the format's range; straight-through gradient."""
    x = wg / scale
    if v is not None:
        x = x + v.reshape(wg.shape)
    return round_to_grid(x.clamp(-fmt.max_norm, fmt.max_norm), fmt)


@register_data_type
class MxFpType(DataType):
    """mx_fp: E8M0 shared exponent (floor rule) with FP4 E2M1 / FP6 E2M3 / FP8 E4M3 elements."""

    name = "mx_fp"
    bits = (4, 6, 8)
    kind = "mx_fp"
    fixed_group_size = 32
    rceil = False

    def param_bits(self, scheme, groups, scale_bits):
        """One E8M0 byte per group."""
        return groups * 8

    def element_format(self, scheme: QuantScheme) -> ElementFormat:
        """The element grid for `scheme.bits`."""
        return MX_FP_FORMATS[scheme.bits]

    def exponent(self, wg, scheme, max_scale=None) -> torch.Tensor:
        """Shared exponent [rows, G, 1] from the group amax times max_scale (beta)."""
        amax = wg.abs().amax(dim=-1, keepdim=True)
        beta = expand_minmax(max_scale, wg)
        if beta is not None:
            amax = amax * beta
        return shared_exponent(amax, self.element_format(scheme), self.rceil)

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False):
        fmt = self.element_format(scheme)
        if search:
            from .search import search_mx_exponent

            e = search_mx_exponent(wg, self.exponent(wg, scheme), fmt, imatrix, scheme.bits)
        else:
            e = self.exponent(wg, scheme, max_scale)
        scale = torch.exp2(e)
        q = quantize_elements(wg, scale, fmt, v)
        return encode_elements(q, fmt), scale.detach().squeeze(-1), None, {}, q * scale

    def decode(self, codes_g, scale, zero, extras, scheme):
        return decode_elements(codes_g, self.element_format(scheme)) * scale.unsqueeze(-1)


@register_data_type
class MxFpRceilType(MxFpType):
    """mx_fp_rceil: as mx_fp with the shared exponent ceil(log2(amax / max_norm))."""

    name = "mx_fp_rceil"
    rceil = True


@register_data_type
class MxIntType(MxFpType):
    """mx_int: E8M0 shared exponent with sign-magnitude integer elements k * 2^-(bits-2)."""

    name = "mx_int"
    bits = (2, 4, 8)
    kind = "mx_int"

    def element_format(self, scheme: QuantScheme) -> ElementFormat:
        return MX_INT_FORMATS[scheme.bits]
