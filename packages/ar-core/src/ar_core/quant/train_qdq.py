"""Lean fake quantization for tuners: `training_qdq(w, scheme, **start)` returns a function (v, min_scale,
max_scale) -> fake-quantized [out, in] weight whose values and gradients equal `fake_quantize` bit for bit.

What a tuner recomputes every step is only what depends on its learnable tensors: the grouped weight, group
ranges and every start parameter that stays fixed (GGUF's double-quantized scales) are computed once; no integer
codes, zero points or element codes are built; symmetric int rounds and clamps in one autograd node without a zero
point. Data types (or start options) without a lean form use `fake_quantize` itself.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..scheme import QuantScheme
from .base import SCALE_THRESHOLD, cast_scale, expand_minmax, get_data_type
from .fp8 import FP8_MIN_SCALE
from .fp_grids import E4M3, to_e4m3_ste
from .gguf import _check_super, _safe, fp16_ste
from .int_types import INIT_SCALE_BOUND, clamp_magnitude
from .mx import quantize_elements, shared_exponent
from .nvfp import nvfp_global_scale, quantize_fp4
from .search import nvfp_block_scale
from .ste import round_clamp_ste, round_ste

TrainingQDQ = Callable[..., torch.Tensor]


def _scaled(x: torch.Tensor | None, s: torch.Tensor | None, wg: torch.Tensor) -> torch.Tensor | None:
    """x * clamp(s, 0, 1) per group, or x when s is None."""
    s = expand_minmax(s, wg)
    return x if s is None else x * s


def _plus_v(x: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
    return x if v is None else x + v.reshape(x.shape)


def _int(dt, wg, scheme: QuantScheme, init_scale=None):
    thresh = SCALE_THRESHOLD[scheme.scale_dtype]
    wmin = wg.amin(dim=-1, keepdim=True).clamp(max=0)
    wmax = wg.amax(dim=-1, keepdim=True).clamp(min=0)
    if scheme.sym:
        half = 2 ** (scheme.bits - 1)

        def scale_of(min_scale, max_scale):
            if init_scale is not None:
                beta = 1.0 if max_scale is None else max_scale.clamp(0, INIT_SCALE_BOUND).reshape(init_scale.shape)
                return cast_scale(clamp_magnitude(init_scale * beta, thresh), scheme)
            lo, hi = _scaled(wmin, min_scale, wg), _scaled(wmax, max_scale, wg)
            scale = torch.where(lo.abs() > hi.abs(), lo.abs() / half, -hi.abs() / half)
            return cast_scale(clamp_magnitude(scale, thresh), scheme)

        def qdq(v, min_scale, max_scale):
            scale = scale_of(min_scale, max_scale)
            return scale * round_clamp_ste(_plus_v(wg / scale, v), -half, half - 1)
        return qdq
    maxq = 2**scheme.bits - 1

    def qdq_asym(v, min_scale, max_scale):
        lo, hi = _scaled(wmin, min_scale, wg), _scaled(wmax, max_scale, wg)
        scale = cast_scale(((hi - lo) / maxq).clamp(min=thresh), scheme)
        zero = torch.clamp(round_ste(-lo / scale), 0, maxq)
        codes = torch.clamp(round_ste(_plus_v(wg / scale, v)) + zero, 0, maxq)
        return scale * (codes - zero)
    return qdq_asym


def _mx(dt, wg, scheme: QuantScheme):
    fmt = dt.element_format(scheme)
    amax = wg.abs().amax(dim=-1, keepdim=True)

    def qdq(v, min_scale, max_scale):
        scale = torch.exp2(shared_exponent(_scaled(amax, max_scale, wg), fmt, dt.rceil))
        return quantize_elements(wg, scale, fmt, v) * scale
    return qdq


def _nvfp(dt, wg, scheme: QuantScheme, global_scale=None):
    if global_scale is None:
        gs = nvfp_global_scale(wg)
    else:
        gs = torch.as_tensor(global_scale, dtype=torch.float32, device=wg.device).reshape(())
    amax = wg.abs().amax(dim=-1, keepdim=True)

    def qdq(v, min_scale, max_scale):
        return quantize_fp4(wg, nvfp_block_scale(_scaled(amax, max_scale, wg), gs), gs, v)[1]
    return qdq


def _fp8(dt, wg, scheme: QuantScheme):
    amax = wg.abs().amax(dim=-1, keepdim=True)

    def qdq(v, min_scale, max_scale):
        scale = cast_scale((_scaled(amax, max_scale, wg) / E4M3.max_norm).clamp(min=FP8_MIN_SCALE), scheme)
        return to_e4m3_ste(_plus_v(wg / scale, v).clamp(-E4M3.max_norm, E4M3.max_norm)) * scale
    return qdq


def _gguf_asym(dt, wg, scheme: QuantScheme, init_params=None):
    """With the searched start the double-quantized scale and min are fixed: only the rounding is learned."""
    if init_params is None:
        return None
    nsub, top = _check_super(wg, scheme), 2**scheme.super_bits - 1
    scale, mn, weights = init_params
    scale_q = dt.double_quantize(scale, nsub, top, weights)[2]
    mn_q = dt.double_quantize(mn, nsub, top, weights)[2]
    base, nonzero, maxq = (wg + mn_q) / _safe(scale_q), scale_q != 0, 2**scheme.bits - 1

    def qdq(v, min_scale, max_scale):
        return scale_q * (round_clamp_ste(_plus_v(base, v), 0, maxq) * nonzero) - mn_q
    return qdq


def _gguf_sym(dt, wg, scheme: QuantScheme, init_scale=None):
    """With the searched start the double-quantized scale is fixed: only the rounding is learned."""
    if init_scale is None:
        return None
    nsub = _check_super(wg, scheme)
    rows, g, _ = wg.shape
    s3 = init_scale.reshape(rows, g // nsub, nsub)
    sh, half = 2 ** (scheme.super_bits - 1), 2 ** (scheme.bits - 1)
    d = fp16_ste(torch.gather(s3, -1, s3.abs().argmax(-1, keepdim=True)) / -sh)
    scale_q = (d * torch.clamp(torch.round(s3 / _safe(d)), -sh, sh - 1)).reshape(rows, g, 1)
    base, nonzero = wg / _safe(scale_q), scale_q != 0

    def qdq(v, min_scale, max_scale):
        return scale_q * (round_clamp_ste(_plus_v(base, v), -half, half - 1) * nonzero)
    return qdq


LEAN = {"int": _int, "mx_fp": _mx, "mx_fp_rceil": _mx, "mx_int": _mx, "nv_fp": _nvfp, "fp": _fp8,
        "int_asym_dq": _gguf_asym, "int_sym_dq": _gguf_sym}


def training_qdq(w: torch.Tensor, scheme: QuantScheme, **start) -> TrainingQDQ:
    """A function (v=None, min_scale=None, max_scale=None) -> float32 fake-quantized `w` for a tuner's steps.

    `start` are the data type's options (`DataType.tuning_start`, nv_fp's global_scale); `w` is fixed.
    """
    from . import fake_quantize

    def generic(v=None, min_scale=None, max_scale=None):
        return fake_quantize(w, scheme, v=v, min_scale=min_scale, max_scale=max_scale, **start)

    if not scheme.is_quantized or scheme.data_type not in LEAN:
        return generic
    dt = get_data_type(scheme.data_type)
    wg = dt.group(w.detach().float(), scheme)
    grouped = LEAN[scheme.data_type](dt, wg, scheme, **start)
    if grouped is None:
        return generic
    shape = tuple(w.shape)

    def qdq(v=None, min_scale=None, max_scale=None):
        return dt.ungroup(grouped(v, min_scale, max_scale), shape, scheme)
    return qdq
