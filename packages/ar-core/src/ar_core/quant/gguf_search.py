"""llama.cpp-style parameter searches for GGUF k-quants, vectorised over groups (no gradients).

Every function takes `x` [N, n] (N groups of n values) and non-negative weights `w` [N, n] and returns per-group
parameters; they mirror the ideas of llama.cpp's make_qkx2_quants (asym scale + min), make_qx_quants (sym scale
grid + least-squares refit), make_q3_quants (sym with per-element refinement) and make_qp_quants (non-negative
super-block scales), written from their descriptions.
"""

from __future__ import annotations

import torch

EPS = 1e-15


def _wsum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(-1, keepdim=True)


def search_scale_min(x, w, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool = False):
    """Asym grid search + weighted least squares for (scale >= 0, min <= 0) with x ~ scale * L + min, L in 0..nmax.

    Returns (scale [N, 1], min [N, 1]).
    """
    lo = x.amin(-1, keepdim=True).clamp(max=0)
    hi = x.amax(-1, keepdim=True)
    span = hi - lo
    flat = span <= 0
    span = torch.where(flat, torch.ones_like(span), span)
    sw, sx, sx2 = _wsum(w), _wsum(w * x), _wsum(w * x * x)

    def error(scale, mn, levels, sl=None, sl2=None, sxl=None):
        if use_mad or sl is None:
            diff = scale * levels + mn - x
            return _wsum(w * (diff.abs() if use_mad else diff * diff))
        # weighted squared error expanded over the sums already at hand (no extra pass over x)
        return (sx2 + scale * scale * sl2 + mn * mn * sw - 2 * scale * sxl - 2 * mn * sx + 2 * scale * mn * sl)

    iscale = nmax / span
    levels = torch.clamp(torch.round(iscale * (x - lo)), 0, nmax)
    best_scale, best_min = 1 / iscale, lo
    best_err = error(best_scale, best_min, levels)
    for i in range(nstep + 1):
        # like llama.cpp, later candidates are measured from the best min found so far
        cur_span = torch.where(flat, span, (hi - best_min).clamp(min=EPS))
        iscale = (rmin + rdelta * i + nmax) / cur_span
        levels = torch.clamp(torch.round(iscale * (x - best_min)), 0, nmax)
        sl, sl2, sxl = _wsum(w * levels), _wsum(w * levels * levels), _wsum(w * levels * x)
        det = sw * sl2 - sl * sl
        ok = det > 0
        safe = torch.where(ok, det, torch.ones_like(det))
        scale = (sw * sxl - sx * sl) / safe
        mn = (sl2 * sx - sl * sxl) / safe
        pos = mn > 0
        scale = torch.where(pos, sxl / sl2.clamp(min=EPS), scale)
        mn = torch.where(pos, torch.zeros_like(mn), mn)
        err = error(scale, mn, levels, sl, sl2, sxl)
        better = ok & (err < best_err)
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_min = torch.where(better, mn, best_min)
    best_scale = torch.where(flat, torch.zeros_like(best_scale), best_scale.clamp(min=0))
    return best_scale, best_min


def _signed_absmax(x: torch.Tensor) -> torch.Tensor:
    idx = x.abs().argmax(-1, keepdim=True)
    return torch.gather(x, -1, idx)


def search_scale_sym(x, w, nmax: int, ntry: int = 9, step: float = 0.1):
    """Sym search: candidates iscale = -(nmax + step*k)/gmax (|k| <= ntry), L in -nmax..nmax-1, keep the best
    least-squares refit by weighted error. Returns the signed scale [N, 1] (0 for all-zero groups)."""
    gmax = _signed_absmax(x)
    zero = gmax.abs() < EPS
    gmax = torch.where(zero, torch.ones_like(gmax), gmax)
    best_scale = torch.zeros_like(gmax)
    best = torch.full_like(gmax, -1.0)
    for k in range(-ntry, ntry + 1):
        levels = torch.clamp(torch.round(-(nmax + step * k) / gmax * x), -nmax, nmax - 1)
        slx, sl2 = _wsum(w * x * levels), _wsum(w * levels * levels)
        ok = sl2 > 0
        scale = slx / torch.where(ok, sl2, torch.ones_like(sl2))
        gain = scale * slx  # = weighted error reduction of the refit
        better = ok & (gain > best)
        best = torch.where(better, gain, best)
        best_scale = torch.where(better, scale, best_scale)
    return torch.where(zero, torch.zeros_like(best_scale), best_scale)


def search_legacy_sym(rows, imatrix, nmax: int, group: int = 32):
    """llama.cpp's weighting of q4_0 with an importance matrix: imatrix * sqrt(sigma^2 + x^2), sigma^2 the mean x^2
    of the whole row, then the sym grid + least-squares search (search_scale_sym) per group.

    `rows` [R, n] float weights, `imatrix` [n] non-negative (a group whose entries are all zero counts as ones).
    Returns the signed scale per group, [R * n / group, 1] (0 for all-zero groups)."""
    x = rows.reshape(rows.shape[0], -1, group)
    im = imatrix.float().reshape(1, -1, group).clamp(min=0).to(rows.device)
    im = torch.where(im.sum(-1, keepdim=True) > 0, im, torch.ones_like(im))
    sigma2 = (x * x).mean((-2, -1), keepdim=True)
    w = im * torch.sqrt(sigma2 + x * x)
    return search_scale_sym(x.reshape(-1, group), w.reshape(-1, group), nmax)


def refine_sym_levels(x, w, nmax: int, iters: int = 5):
    """make_q3-style: start from RTN at -nmax/gmax, then move single levels while the refit error drops.

    Returns the signed scale [N, 1]."""
    gmax = _signed_absmax(x)
    zero = gmax.abs() < EPS
    gmax = torch.where(zero, torch.ones_like(gmax), gmax)
    levels = torch.clamp(torch.round(-nmax / gmax * x), -nmax, nmax - 1)
    slx, sl2 = _wsum(w * x * levels), _wsum(w * levels * levels)
    for _ in range(iters):
        changed = torch.zeros_like(zero)
        for i in range(x.shape[-1]):
            xi, wi, li = x[:, i:i + 1], w[:, i:i + 1], levels[:, i:i + 1]
            part_lx, part_l2 = slx - wi * xi * li, sl2 - wi * li * li
            ok = (part_lx > 0) & (part_l2 > 0)
            new = torch.clamp(torch.round(xi * part_l2 / torch.where(ok, part_lx, torch.ones_like(part_lx))),
                              -nmax, nmax - 1)
            nlx, nl2 = part_lx + wi * xi * new, part_l2 + wi * new * new
            take = ok & (new != li) & (nl2 > 0) & (nlx * nlx * sl2 > slx * slx * nl2)
            levels[:, i:i + 1] = torch.where(take, new, li)
            slx, sl2 = torch.where(take, nlx, slx), torch.where(take, nl2, sl2)
            changed |= take
        if not changed.any():
            break
    scale = slx / torch.where(sl2 > 0, sl2, torch.ones_like(sl2))
    return torch.where(zero | (sl2 <= 0), torch.zeros_like(scale), scale)


def search_super_scale(values, w, nmax: int):
    """make_qp-style: quantize non-negative `values` [N, n] to integers 0..nmax with one scale per row, weighted by
    `w`; tries nmax +- 0.1k then refines single integers. Returns (scale [N, 1], integers [N, n])."""
    top = values.amax(-1, keepdim=True)
    zero = top <= 0
    top = torch.where(zero, torch.ones_like(top), top)

    def ints(iscale):
        return torch.clamp(torch.round(iscale * values), 0, nmax)

    best_iscale = nmax / top
    best_err = _wsum(w * (values - ints(best_iscale) / best_iscale) ** 2)
    for k in (-4, -3, -2, -1, 1, 2, 3, 4):
        iscale = (nmax + 0.1 * k) / top
        err = _wsum(w * (values - ints(iscale) / iscale) ** 2)
        better = err < best_err
        best_err, best_iscale = torch.where(better, err, best_err), torch.where(better, iscale, best_iscale)
    levels = ints(best_iscale)
    slx, sl2 = _wsum(w * values * levels), _wsum(w * levels * levels)
    for _ in range(5):
        changed = False
        for i in range(values.shape[-1]):
            xi, wi, li = values[:, i:i + 1], w[:, i:i + 1], levels[:, i:i + 1]
            part_lx, part_l2 = slx - wi * xi * li, sl2 - wi * li * li
            ok = (part_lx > 0) & (part_l2 > 0)
            new = torch.clamp(torch.round(xi * part_l2 / torch.where(ok, part_lx, torch.ones_like(part_lx))), 0, nmax)
            nlx, nl2 = part_lx + wi * xi * new, part_l2 + wi * new * new
            take = ok & (new != li) & (nlx * nlx * sl2 > slx * slx * nl2)
            levels[:, i:i + 1] = torch.where(take, new, li)
            slx, sl2 = torch.where(take, nlx, slx), torch.where(take, nl2, sl2)
            changed = changed or bool(take.any())
        if not changed:
            break
    scale = slx / torch.where(sl2 > 0, sl2, torch.ones_like(sl2))
    scale = torch.where(zero | (sl2 <= 0), torch.zeros_like(scale), scale)
    return scale, levels
