"""Integer quantization: full-range symmetric (the reference's default) and asymmetric with an integer zero."""

from __future__ import annotations

import torch

from ..scheme import QuantScheme
from .base import SCALE_THRESHOLD, DataType, cast_scale, expand_minmax, register_data_type
from .ste import round_ste

INIT_SCALE_BOUND = 2.0  # max_scale multiplies a searched start scale within [0, 2] (the reference's SignRoundV2)


def clamp_magnitude(scale: torch.Tensor, thresh: float) -> torch.Tensor:
    """Keep |scale| >= thresh while keeping its sign (a zero scale becomes +thresh)."""
    sign = torch.where(scale < 0, -1.0, 1.0)
    return sign * scale.abs().clamp(min=thresh)


def group_range(wg: torch.Tensor, min_scale=None, max_scale=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group (min(w, 0) * alpha, max(w, 0) * beta), each [rows, G, 1]."""
    wmin = wg.amin(dim=-1, keepdim=True).clamp(max=0)
    wmax = wg.amax(dim=-1, keepdim=True).clamp(min=0)
    a, b = expand_minmax(min_scale, wg), expand_minmax(max_scale, wg)
    if a is not None:
        wmin = wmin * a
    if b is not None:
        wmax = wmax * b
    return wmin, wmax


@register_data_type
class IntType(DataType):
    """int: sym uses the full signed range (largest magnitude maps to -2^(b-1)), asym an integer zero point."""

    name = "int"
    bits = (2, 3, 4, 5, 6, 8)
    pack_multiple = 32  # int weight-only exports pack 32-bit words along both dims

    def storage_kind(self, scheme: QuantScheme) -> str:
        """int_sym / int_asym for weight-only schemes; int_w8a8 (W8A8 int) or int_act with quantized activations."""
        if scheme.quantizes_activations:
            return "int_w8a8" if (scheme.bits, scheme.act_bits, scheme.act_data_type) == (8, 8, "int") else "int_act"
        return "int_sym" if scheme.sym else "int_asym"

    def param_bits(self, scheme: QuantScheme, groups: int, scale_bits: int) -> int:
        """One scale per group, plus a bits-wide zero point when asymmetric."""
        return groups * (scale_bits + (0 if scheme.sym else scheme.bits))

    def shape_fallback(self, n_in, n_out, scheme, gguf_format):
        """Weight-only int outside the GGUF format packs words: n_in and n_out must be multiples of 32."""
        if not scheme.quantizes_activations and not gguf_format:
            bad = [f"{k}={v}" for k, v in (("in_features", n_in), ("out_features", n_out)) if v % self.pack_multiple]
            if bad:
                return QuantScheme(bits=16, data_type="float"), \
                    f"{' and '.join(bad)} not a multiple of {self.pack_multiple} (int packing)"
        return super().shape_fallback(n_in, n_out, scheme, gguf_format)

    def scale_zero(self, wg, scheme: QuantScheme, min_scale=None, max_scale=None):
        """Per-group (scale, zero) before rounding; scale keeps gradients through min/max scales."""
        wmin, wmax = group_range(wg, min_scale, max_scale)
        thresh = SCALE_THRESHOLD[scheme.scale_dtype]
        if scheme.sym:
            maxq = 2 ** (scheme.bits - 1)
            scale = torch.where(wmin.abs() > wmax.abs(), wmin.abs() / maxq, -wmax.abs() / maxq)
            scale = cast_scale(clamp_magnitude(scale, thresh), scheme)
            zero = torch.full_like(scale, float(maxq))
        else:
            maxq = 2**scheme.bits - 1
            scale = cast_scale(((wmax - wmin) / maxq).clamp(min=thresh), scheme)
            zero = torch.clamp(round_ste(-wmin / scale), 0, maxq)
        return scale, zero

    def tuning_start(self, wg, scheme, imatrix=None) -> dict:
        """Symmetric int below 8 bits: the searched scale, which max_scale then multiplies (in [0, 2])."""
        if not scheme.sym or scheme.bits >= 8:
            return {}
        from .search import search_int_sym_scale

        return {"init_scale": search_int_sym_scale(wg, scheme, imatrix)}

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False,
               init_scale=None):
        if init_scale is None and search:
            init_scale = self.tuning_start(wg, scheme, imatrix).get("init_scale")
        if init_scale is not None:  # a searched scale, times max_scale when tuning (alpha unused)
            beta = 1.0 if max_scale is None else max_scale.clamp(0, INIT_SCALE_BOUND).reshape(init_scale.shape)
            thresh = SCALE_THRESHOLD[scheme.scale_dtype]
            scale = cast_scale(clamp_magnitude(init_scale * beta, thresh), scheme)
            zero = torch.full_like(scale, float(2 ** (scheme.bits - 1)))
        else:
            scale, zero = self.scale_zero(wg, scheme, min_scale, max_scale)
        x = wg / scale
        if v is not None:
            x = x + v.reshape(wg.shape)
        qmax = 2**scheme.bits - 1
        codes = torch.clamp(round_ste(x) + zero, 0, qmax)
        fake = scale * (codes - zero)
        return (codes.detach().to(torch.uint8), scale.detach().squeeze(-1), zero.detach().squeeze(-1).to(torch.int32),
                {}, fake)

    def decode(self, codes_g, scale, zero, extras, scheme):
        return scale.unsqueeze(-1) * (codes_g.float() - zero.unsqueeze(-1).float())
