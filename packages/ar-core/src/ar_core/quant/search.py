"""Optimized-RTN parameter searches: pick per-group scales that minimise the (imatrix-weighted) squared error.

    int sym   candidates scale = -gmax / (nmax - step*k): 2-bit k in [-90, 90], step 0.01; otherwise k in
              [-100, 100], step 0.0075*nmax (nmax * (1 +- 0.75)); gmax is the signed largest-magnitude element.
              Coarse to fine: k = -kmax, -kmax+4, ..., then k* +- 0.5, 1, ..., 3.5 around each group's best k*
    MX        the shared exponent e, e - 1 or e + 1
    NVFP4     block scale e4m3(gs * amax * m / 6) for m in 0.50, 0.51, ..., 1.51

Every search also scores the plain RTN parameters and keeps them unless a candidate is strictly better, so the
result is never worse than RTN. Candidates are scored after the same casts and clamps the quantizer applies.
The imatrix holds one non-negative weight per input channel (e.g. the mean of x^2 over calibration tokens).
"""

from __future__ import annotations

import torch

from ..errors import ArError, field_error
from ..scheme import QuantScheme
from .base import SCALE_THRESHOLD, cast_scale
from .fp_grids import E2M1, E4M3, ElementFormat, encode_elements, to_e4m3_ste
from .groups import to_groups

SEARCH_SCALE_RATIO = 0.75
INT_SEARCH_COARSE = 4  # the int sym search scores every 4th grid point, then half-steps around each group's best
SEARCH_CHUNK_ELEMENTS = 1 << 19  # candidates scored at once: about this many weight elements (2 MiB, in cache)
NVFP_MULTIPLIERS = [m / 100 for m in range(50, 152)]


def group_imatrix(imatrix: torch.Tensor, wg: torch.Tensor) -> torch.Tensor:
    """Lay a per-input-channel vector out like the grouped weight `wg`: [1, G, gs], zeros on the padding.

    A per-tensor group ([1, 1, out*in]) repeats the vector once per output row.
    """
    imatrix = imatrix.detach().float().reshape(-1).to(wg.device)
    n = imatrix.numel()
    rows, groups, gs = wg.shape
    if rows == 1 and groups == 1 and n > 0 and gs % n == 0:
        return imatrix.repeat(gs // n).reshape(1, 1, gs)
    if groups * gs < n or groups * gs - n >= gs:
        raise field_error(ArError, "imatrix", tuple(imatrix.shape),
                          f"one value per input channel of the weight (groups {groups} x {gs})")
    return to_groups(imatrix.reshape(1, -1), gs)


def search_weights(wg: torch.Tensor, imatrix: torch.Tensor | None, bits: int) -> torch.Tensor | None:
    """Per-element loss weights from an imatrix (None without one), with AutoRound's handling of zero entries.

    In a group where more than half the real entries are zero the imatrix is replaced by |w| (<= 3 bits) or
    |w| + sqrt(sum(w^2) / 32); other zero entries get the mean of the group's non-zero entries.
    """
    if imatrix is None:
        return None
    weights = group_imatrix(imatrix, wg)
    if bool((imatrix > 1e-30).all()):
        return weights
    valid = group_imatrix(torch.ones_like(imatrix, dtype=torch.float32), wg) > 0
    weights = weights.expand_as(wg).clone()
    valid = valid.expand_as(wg)
    zero = (weights <= 1e-30) & valid
    n_zero = zero.sum(dim=-1, keepdim=True)
    n_valid = valid.sum(dim=-1, keepdim=True)
    if bits <= 3:
        fallback = wg.abs()
    else:
        fallback = wg.abs() + torch.sqrt(wg.pow(2).sum(dim=-1, keepdim=True) / 32)
    mean = weights.sum(dim=-1, keepdim=True) / (n_valid - n_zero).clamp(min=1)
    weights = torch.where(zero, mean, weights)
    weights = torch.where(n_zero > n_valid // 2, fallback.detach(), weights)
    return weights * valid


def weighted_error(fake: torch.Tensor, wg: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Per-group sum of (weighted) squared errors, shape [rows, G]."""
    err = (fake - wg).pow(2)
    if weights is not None:
        err = err * weights
    return err.sum(dim=-1)


def _keep_better(best, best_loss, cand, loss):
    """Per group, take `cand` where `loss` is strictly lower."""
    better = loss < best_loss
    return torch.where(better.unsqueeze(-1), cand, best), torch.where(better, loss, best_loss)


def _int_sym_lowest(wg: torch.Tensor, scales: torch.Tensor, nmax: int,
                    weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest weighted error [rows, G] over K candidate scales [K, rows, G, 1] and the index in K of the first
    candidate reaching it (as argmin over all K): reciprocal multiplies, chunked in K, a running minimum."""
    per_chunk = max(1, SEARCH_CHUNK_ELEMENTS // wg.numel())
    best = arg = None
    for first, c in zip(range(0, scales.shape[0], per_chunk), scales.split(per_chunk)):
        buf = wg * c.reciprocal()
        buf.round_().clamp_(-nmax, nmax - 1).mul_(c).sub_(wg).square_()
        if weights is not None:
            buf.mul_(weights)
        loss, i = buf.sum(dim=-1).min(dim=0)
        if best is None:
            best, arg = loss, i
        else:
            better = loss < best
            best, arg = torch.where(better, loss, best), torch.where(better, i + first, arg)
    return best, arg


@torch.no_grad()
def search_int_sym_scale(wg: torch.Tensor, scheme: QuantScheme, imatrix: torch.Tensor | None = None) -> torch.Tensor:
    """Best full-range symmetric scale per group, [rows, G, 1] (already cast to `scheme.scale_dtype`).

    Coarse to fine: every INT_SEARCH_COARSE-th k of the grid first, then half-steps around each group's best k.
    """
    from .int_types import IntType, clamp_magnitude

    wg = wg.detach().float()
    nmax = 2 ** (scheme.bits - 1)
    weights = search_weights(wg, imatrix, scheme.bits)
    thresh = SCALE_THRESHOLD[scheme.scale_dtype]
    idx = wg.abs().argmax(dim=-1, keepdim=True)
    gmax = torch.take_along_dim(wg, idx, dim=-1)
    gmax = torch.where(gmax == 0, torch.ones_like(gmax), gmax)
    if scheme.bits == 2:
        kmax, step = 90, 0.01
    else:
        kmax, step = 100, SEARCH_SCALE_RATIO * nmax / 100

    def scales_of(k):  # k: [K, 1, 1, 1] or [K, rows, G, 1]
        return cast_scale(clamp_magnitude(-gmax / (nmax - step * k), thresh), scheme)

    coarse = torch.arange(-kmax, kmax + 1, INT_SEARCH_COARSE, dtype=torch.float32, device=wg.device)
    coarse_loss, coarse_i = _int_sym_lowest(wg, scales_of(coarse.reshape(-1, 1, 1, 1)), nmax, weights)
    center = coarse[coarse_i].unsqueeze(-1)  # [rows, G, 1]
    offsets = torch.arange(1, 2 * INT_SEARCH_COARSE, dtype=torch.float32, device=wg.device) / 2
    fine_k = (center + torch.cat([-offsets, offsets]).reshape(-1, 1, 1, 1)).clamp(-kmax, kmax)
    fine_loss, fine_i = _int_sym_lowest(wg, scales_of(fine_k), nmax, weights)
    finer = (fine_loss < coarse_loss).unsqueeze(-1)  # a coarse point wins ties, as argmin over both would
    best_k = torch.where(finer, fine_k.gather(0, fine_i[None, ..., None])[0], center)
    rtn = IntType().scale_zero(wg, scheme)[0]
    return _keep_better(rtn, _int_sym_lowest(wg, rtn[None], nmax, weights)[0], scales_of(best_k),
                        torch.minimum(coarse_loss, fine_loss))[0]


@torch.no_grad()
def search_mx_exponent(wg: torch.Tensor, exponent: torch.Tensor, fmt: ElementFormat,
                       imatrix: torch.Tensor | None = None, bits: int = 4) -> torch.Tensor:
    """Best shared exponent per group among exponent - 1, exponent, exponent + 1 ([rows, G, 1])."""
    from .mx import E8M0_MAX_EXP, quantize_elements

    wg = wg.detach().float()
    weights = search_weights(wg, imatrix, bits)

    def loss_of(e):
        scale = torch.exp2(e)
        return weighted_error(quantize_elements(wg, scale, fmt) * scale, wg, weights)

    best = exponent.detach()
    best_loss = loss_of(best)
    for shift in (-1, 1):
        cand = (best + shift).clamp(-E8M0_MAX_EXP, E8M0_MAX_EXP)
        best, best_loss = _keep_better(best, best_loss, cand, loss_of(cand))
    return best


def nvfp_block_scale(amax: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """E4M3 block scale gs * amax / 6 (clamped to 448), straight-through."""
    return to_e4m3_ste((global_scale * amax / E2M1.max_norm).clamp(max=448.0))


@torch.no_grad()
def search_nvfp_block_scale(wg: torch.Tensor, global_scale: torch.Tensor,
                            imatrix: torch.Tensor | None = None) -> torch.Tensor:
    """Best E4M3 block scale per group over the amax multipliers 0.50..1.51 ([rows, G, 1]).

    The 0.01 multiplier steps are finer than the E4M3 grid, so the distinct candidates are exactly the E4M3 values
    from e4m3(0.50 x) to e4m3(1.51 x); those (about 14 per group) are scored instead of all 102 multipliers.
    """
    from .nvfp import quantize_fp4

    wg = wg.detach().float()
    weights = search_weights(wg, imatrix, 4)
    amax = wg.abs().amax(dim=-1, keepdim=True)

    def loss_of(block_scale):
        return weighted_error(quantize_fp4(wg, block_scale, global_scale)[1], wg, weights)

    best = nvfp_block_scale(amax, global_scale)
    best_loss = loss_of(best)
    table = E4M3.magnitudes.to(wg.device)
    lo = encode_elements(nvfp_block_scale(amax * NVFP_MULTIPLIERS[0], global_scale), E4M3).long()
    hi = encode_elements(nvfp_block_scale(amax * NVFP_MULTIPLIERS[-1], global_scale), E4M3).long()
    for k in range(int((hi - lo).max()) + 1 if lo.numel() else 0):
        cand = table[torch.minimum(lo + k, hi)]
        best, best_loss = _keep_better(best, best_loss, cand, loss_of(cand))
    return best
