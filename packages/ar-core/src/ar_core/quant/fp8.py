"""FP8 E4M3FN weights: scale = amax * beta / 448 (at least 1 / (448 * 512)), codes are float8_e4m3fn.

Granularity from group_size: 0 per tensor (scale [1, 1]), -1 per output channel ([out, 1]), g > 0 per group of g
inputs ([out, G]) and (m, n) 2-D blocks ([ceil(out/m), ceil(in/n)], both dims zero-padded).
"""

from __future__ import annotations

import torch

from ..errors import SchemeError, field_error
from .base import DataType, cast_scale, expand_minmax, register_data_type
from .fp_grids import E4M3, to_e4m3_ste

FP8_MIN_SCALE = 1.0 / (E4M3.max_norm * 512.0)


def to_blocks(w: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """[out, in] -> [ceil(out/m), ceil(in/n), m*n], zero-padding both dims."""
    m, n = block
    out, cols = w.shape
    bo, bi = -(-out // m), -(-cols // n)
    w = torch.nn.functional.pad(w, (0, bi * n - cols, 0, bo * m - out))
    return w.reshape(bo, m, bi, n).permute(0, 2, 1, 3).reshape(bo, bi, m * n)


def from_blocks(wb: torch.Tensor, shape: tuple[int, int], block: tuple[int, int]) -> torch.Tensor:
    """Inverse of `to_blocks`: drop the padding."""
    m, n = block
    bo, bi, _ = wb.shape
    w = wb.reshape(bo, bi, m, n).permute(0, 2, 1, 3).reshape(bo * m, bi * n)
    return w[: shape[0], : shape[1]]


@register_data_type
class FpType(DataType):
    """fp: FP8 E4M3FN, per tensor / channel / group / 2-D block."""

    name = "fp"
    bits = (8, 16)
    block_groups = True

    def check(self, scheme):
        """Symmetric only when quantized."""
        super().check(scheme)
        if scheme.bits < 16 and not scheme.sym:
            raise field_error(SchemeError, "sym", scheme.sym, "FP8 is symmetric only")

    def storage_kind(self, scheme):
        """fp8_block (2-D blocks), fp8_weight (weight-only), else fp8_dynamic / fp8_static activations."""
        if isinstance(scheme.group_size, tuple):
            return "fp8_block"
        if not scheme.quantizes_activations:
            return "fp8_weight"
        return "fp8_dynamic" if scheme.act_dynamic else "fp8_static"

    def group(self, w, scheme):
        if w.dtype == torch.float8_e4m3fn:
            w = w.float()
        if isinstance(scheme.group_size, tuple):
            return to_blocks(w, scheme.group_size)
        return super().group(w, scheme)

    def ungroup(self, wg, shape, scheme):
        if isinstance(scheme.group_size, tuple):
            return from_blocks(wg, shape, scheme.group_size)
        return super().ungroup(wg, shape, scheme)

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False):
        amax = wg.abs().amax(dim=-1, keepdim=True)
        beta = expand_minmax(max_scale, wg)
        if beta is not None:
            amax = amax * beta
        scale = cast_scale((amax / E4M3.max_norm).clamp(min=FP8_MIN_SCALE), scheme)
        x = wg / scale
        if v is not None:
            x = x + v.reshape(wg.shape)
        q = to_e4m3_ste(x.clamp(-E4M3.max_norm, E4M3.max_norm))
        return q.detach().to(torch.float8_e4m3fn), scale.detach().squeeze(-1), None, {}, q * scale

    def decode(self, codes_g, scale, zero, extras, scheme):
        return codes_g.float() * scale.unsqueeze(-1)
