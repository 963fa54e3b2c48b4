"""GGUF k-quant data types: groups quantized with per-group scales (and mins) that are themselves quantized per
super-block ("double quantization"), as llama.cpp's q2_k/q3_k/q4_k/q5_k/q6_k store them.

  int_asym_dq (q2_k, q4_k, q5_k): w = scale * q - mn, q in 0..2^b-1, scale = d * sc, mn = dmin * mc with
      sc, mc in 0..2^super_bits-1 and d, dmin fp16 per super-block.
  int_sym_dq (q3_k, q6_k): w = scale * (q - 2^(b-1)), scale = d * sc with sc signed super_bits integers.

QuantizedTensor conventions: codes hold q per element; scale [out, G] is the double-quantized d * sc; zero is the
float minimum -mn (asym, so w = scale * codes + zero) or the integer 2^(b-1) (sym). `extras` holds the super-block
integers: d [out, S] and (asym) dmin [out, S] float32 (exact fp16 values), sub_scale [out, G] (uint8 asym / int8
sym) and (asym) sub_min [out, G] uint8, S = G / super_group_size. `search=True` runs llama.cpp-style searches
(ar_core.quant.gguf_search), weighted by the imatrix when given; otherwise min/max (alpha/beta) scales, which keep
gradients for SignRound together with the rounding offset v.
"""

from __future__ import annotations

import torch

from ..errors import SchemeError, field_error
from .base import DataType, expand_minmax, register_data_type
from .gguf_search import refine_sym_levels, search_scale_min, search_scale_sym, search_super_scale
from .ste import round_ste

FP16_MAX = 65504.0
# (rmin, rdelta, nstep, use_mad) of the asym scale/min search without an imatrix, per bit width.
ASYM_GRID = {2: (-0.5, 0.1, 15, True), 4: (-1.0, 0.1, 20, False), 5: (-0.5, 0.1, 15, False)}
ASYM_GRID_IMATRIX = (-0.9, 0.05, 36, False)


def fp16_ste(t: torch.Tensor) -> torch.Tensor:
    """Round through float16 (clamped to its range) in the forward pass, identity gradient backward."""
    return t + (t.clamp(-FP16_MAX, FP16_MAX).to(torch.float16).float() - t).detach()


def _safe(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t == 0, torch.ones_like(t), t)


def _check_super(wg: torch.Tensor, scheme) -> int:
    nsub = scheme.super_group_size
    if wg.shape[1] % nsub:
        raise field_error(SchemeError, "in_features", wg.shape[1] * wg.shape[2],
                          f"a multiple of {nsub * wg.shape[2]} for {scheme.data_type} (GGUF super-block); "
                          "the GGUF writer falls back to q5_0/q8_0 for such layers")
    return nsub


def _imatrix_groups(imatrix, wg: torch.Tensor) -> torch.Tensor | None:
    """Per-input-channel importance [in] -> [1, G, gs] (zero padded), with all-zero groups replaced by ones."""
    if imatrix is None:
        return None
    _, g, gs = wg.shape
    im = imatrix.float().reshape(-1).clamp(min=0).to(wg.device)
    im = torch.nn.functional.pad(im, (0, g * gs - im.numel())).reshape(1, g, gs)
    empty = im.sum(-1, keepdim=True) <= 0
    return torch.where(empty, torch.ones_like(im), im)


def _search_weights(x: torch.Tensor, im: torch.Tensor | None, nsub: int) -> torch.Tensor:
    """llama.cpp's imatrix weighting: imatrix * sqrt(sigma^2 + x^2), sigma^2 = 2 * mean x^2 over the super-block."""
    rows, g, gs = x.shape
    sigma2 = 2 * (x * x).reshape(rows, g // nsub, -1).mean(-1, keepdim=True)
    sigma2 = sigma2.expand(-1, -1, nsub * gs).reshape(rows, g, gs)
    return im * torch.sqrt(sigma2 + x * x)


def _check_double_quant(name: str, scheme, sym: bool) -> None:
    if scheme.super_bits is None or scheme.super_group_size is None:
        raise field_error(SchemeError, "super_bits", scheme.super_bits,
                          f"data_type {name!r} needs super_bits and super_group_size")
    if scheme.sym != sym:
        raise field_error(SchemeError, "sym", scheme.sym, f"data_type {name!r} fixes sym={not scheme.sym}")


@register_data_type
class IntAsymDQ(DataType):
    """int_asym_dq: GGUF q2_k / q4_k / q5_k."""

    name = "int_asym_dq"
    bits = (2, 4, 5)
    kind = "gguf"
    gguf_types = {2: "q2_k", 4: "q4_k", 5: "q5_k"}

    def check(self, scheme):
        """Needs super_bits and super_group_size; asymmetric."""
        _check_double_quant(self.name, scheme, sym=False)

    def group_params(self, wg, scheme, min_scale, max_scale, im, search):
        """Per-group (scale, mn >= 0) before double quantization, plus the search weights (or None)."""
        maxq = 2**scheme.bits - 1
        if search:
            with torch.no_grad():
                if im is not None:
                    w = _search_weights(wg, im, scheme.super_group_size)
                    rmin, rdelta, nstep, mad = ASYM_GRID_IMATRIX
                else:
                    rmin, rdelta, nstep, mad = ASYM_GRID[scheme.bits]
                    w = wg.abs()
                    if scheme.bits > 2:
                        w = w + torch.sqrt((wg * wg).mean(-1, keepdim=True))
                flat = wg.reshape(-1, wg.shape[-1])
                scale, lo = search_scale_min(flat, w.reshape(flat.shape), maxq, rmin, rdelta, nstep, mad)
            shape = (*wg.shape[:2], 1)
            return scale.reshape(shape), (-lo).reshape(shape), (w if im is not None else None)
        lo = wg.amin(-1, keepdim=True).clamp(max=0)
        hi = wg.amax(-1, keepdim=True)
        a, b = expand_minmax(min_scale, wg), expand_minmax(max_scale, wg)
        if a is not None:
            lo = lo * a
        if b is not None:
            hi = hi * b
        return ((hi - lo) / maxq).clamp(min=0), -lo, None

    @staticmethod
    def double_quantize(values, nsub: int, top: int, weights):
        """[rows, G, 1] non-negative values -> (d [rows, S, 1], integers [rows, G, 1], quantized [rows, G, 1])."""
        rows, g, _ = values.shape
        v3 = values.reshape(rows, g // nsub, nsub)
        if weights is not None:
            with torch.no_grad():
                sw = weights.sum(-1).reshape(-1, nsub)
                d, ints = search_super_scale(v3.reshape(-1, nsub), sw, top)
            d = fp16_ste(d.reshape(rows, -1, 1))
            ints = ints.reshape(rows, -1, nsub)
        else:
            vmax = v3.amax(-1, keepdim=True)
            ints = torch.clamp(round_ste(v3 * (top / _safe(vmax))), 0, top)  # llama.cpp: integers from fp32 max
            d = fp16_ste(vmax / top)
        return d, ints.reshape(rows, g, 1), (d * ints).reshape(rows, g, 1)

    def tuning_start(self, wg, scheme, imatrix=None) -> dict:
        """The searched (scale, min, search weights), kept fixed while a tuner learns the rounding (as the
        reference's GGUF tuning does: min/max scales unused)."""
        _check_super(wg, scheme)
        return {"init_params": self.group_params(wg, scheme, None, None, _imatrix_groups(imatrix, wg), True)}

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False,
               init_params=None):
        nsub = _check_super(wg, scheme)
        im = _imatrix_groups(imatrix, wg)
        scale, mn, weights = init_params or self.group_params(wg, scheme, min_scale, max_scale, im, search)
        top = 2**scheme.super_bits - 1
        d, sc, scale_q = self.double_quantize(scale, nsub, top, weights)
        dmin, mc, mn_q = self.double_quantize(mn, nsub, top, weights)
        x = (wg + mn_q) / _safe(scale_q)
        if v is not None:
            x = x + v.reshape(wg.shape)
        q = torch.clamp(round_ste(x), 0, 2**scheme.bits - 1) * (scale_q != 0)
        fake = scale_q * q - mn_q
        extras = {"d": d.detach().squeeze(-1), "dmin": dmin.detach().squeeze(-1),
                  "sub_scale": sc.detach().squeeze(-1).to(torch.uint8),
                  "sub_min": mc.detach().squeeze(-1).to(torch.uint8)}
        return q.detach().to(torch.uint8), scale_q.detach().squeeze(-1), (-mn_q).detach().squeeze(-1), extras, fake

    def decode(self, codes_g, scale, zero, extras, scheme):
        return scale.unsqueeze(-1) * codes_g.float() + zero.unsqueeze(-1)


@register_data_type
class IntSymDQ(DataType):
    """int_sym_dq: GGUF q3_k / q6_k."""

    name = "int_sym_dq"
    bits = (3, 6)
    kind = "gguf"
    gguf_types = {3: "q3_k", 6: "q6_k"}

    def check(self, scheme):
        """Needs super_bits and super_group_size; symmetric."""
        _check_double_quant(self.name, scheme, sym=True)

    def group_scale(self, wg, scheme, min_scale, max_scale, im, search):
        """Signed per-group scale before double quantization (the largest magnitude maps to -2^(b-1))."""
        half = 2 ** (scheme.bits - 1)
        if search:
            with torch.no_grad():
                flat = wg.reshape(-1, wg.shape[-1])
                if im is not None:
                    w = _search_weights(wg, im, scheme.super_group_size).reshape(flat.shape)
                    scale = search_scale_sym(flat, w, half)
                elif scheme.bits == 3:
                    scale = refine_sym_levels(flat, flat * flat, half)
                else:
                    scale = search_scale_sym(flat, flat * flat, half)
            return scale.reshape(*wg.shape[:2], 1)
        wmin = wg.amin(-1, keepdim=True).clamp(max=0)
        wmax = wg.amax(-1, keepdim=True).clamp(min=0)
        a, b = expand_minmax(min_scale, wg), expand_minmax(max_scale, wg)
        if a is not None:
            wmin = wmin * a
        if b is not None:
            wmax = wmax * b
        return torch.where(wmin.abs() > wmax.abs(), wmin.abs() / half, -wmax.abs() / half)

    def tuning_start(self, wg, scheme, imatrix=None) -> dict:
        """The searched per-group scale, kept fixed while a tuner learns the rounding (min/max scales unused)."""
        _check_super(wg, scheme)
        return {"init_scale": self.group_scale(wg, scheme, None, None, _imatrix_groups(imatrix, wg), True)}

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False,
               init_scale=None):
        nsub = _check_super(wg, scheme)
        rows, g, _ = wg.shape
        scale = init_scale if init_scale is not None else \
            self.group_scale(wg, scheme, min_scale, max_scale, _imatrix_groups(imatrix, wg), search)
        s3 = scale.reshape(rows, g // nsub, nsub)
        sh = 2 ** (scheme.super_bits - 1)
        gmax = torch.gather(s3, -1, s3.abs().argmax(-1, keepdim=True))
        d = fp16_ste(gmax / -sh)
        sc = torch.clamp(round_ste(s3 / _safe(d)), -sh, sh - 1)
        scale_q = (d * sc).reshape(rows, g, 1)
        half = 2 ** (scheme.bits - 1)
        x = wg / _safe(scale_q)
        if v is not None:
            x = x + v.reshape(wg.shape)
        q = torch.clamp(round_ste(x), -half, half - 1) * (scale_q != 0)
        fake = scale_q * q
        extras = {"d": d.detach().reshape(rows, -1), "sub_scale": sc.detach().reshape(rows, g).to(torch.int8)}
        zero = torch.full((rows, g), half, dtype=torch.int32, device=wg.device)
        return (q + half).detach().to(torch.uint8), scale_q.detach().squeeze(-1), zero, extras, fake

    def decode(self, codes_g, scale, zero, extras, scheme):
        return scale.unsqueeze(-1) * (codes_g.float() - zero.unsqueeze(-1).float())
