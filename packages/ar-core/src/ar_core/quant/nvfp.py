"""NVFP4: FP4 E2M1 elements in groups of 16, E4M3 block scales and one float32 global scale per tensor.

    gs  = 448 * 6 / amax(W)                    (or a given `global_scale`, e.g. the minimum over fused siblings)
    s_b = e4m3(gs * amax_block * beta / 6)     (clamped to 448)
    w  ~= fp4(clamp(w / (s_b / gs) + v, +-6)) * (s_b / gs)
"""

from __future__ import annotations

import torch

from .base import DataType, expand_minmax, register_data_type
from .fp_grids import E2M1, E4M3, decode_elements, encode_elements, round_to_grid

NVFP_GLOBAL_MAX = E4M3.max_norm * E2M1.max_norm


def nvfp_global_scale(w: torch.Tensor) -> torch.Tensor:
    """Per-tensor float32 global scale 448 * 6 / amax(w) (1.0 for an all-zero tensor)."""
    amax = w.detach().abs().max().float()
    return torch.where(amax > 0, NVFP_GLOBAL_MAX / amax, torch.ones_like(amax))


def quantize_fp4(wg: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor, v=None):
    """(FP4 grid values, fake-quantized groups) for grouped weights and [rows, G, 1] block scales."""
    deq = block_scale / global_scale
    safe = torch.where(deq > 0, deq, torch.ones_like(deq))
    x = torch.where(deq > 0, wg / safe, torch.zeros_like(wg))
    if v is not None:
        x = x + v.reshape(wg.shape)
    q = round_to_grid(x.clamp(-E2M1.max_norm, E2M1.max_norm), E2M1)
    return q, q * deq


@register_data_type
class NvFpType(DataType):
    """nv_fp: NVFP4 (group 16); QuantizedTensor.extras['global_scale'] holds gs; w = fp4 * scale / gs."""

    name = "nv_fp"
    bits = (4,)
    kind = "nv_fp"
    fixed_group_size = 16

    def param_bits(self, scheme, groups, scale_bits):
        """One E4M3 byte per group and a float32 global scale per tensor."""
        return groups * 8 + 32

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False,
               global_scale=None):
        from .search import nvfp_block_scale, search_nvfp_block_scale

        if global_scale is None:
            gs = nvfp_global_scale(wg)
        else:
            gs = torch.as_tensor(global_scale, dtype=torch.float32, device=wg.device).reshape(())
        if search:
            block = search_nvfp_block_scale(wg, gs, imatrix)
        else:
            amax = wg.abs().amax(dim=-1, keepdim=True)
            beta = expand_minmax(max_scale, wg)
            block = nvfp_block_scale(amax if beta is None else amax * beta, gs)
        q, fake = quantize_fp4(wg, block, gs, v)
        return encode_elements(q, E2M1), block.detach().squeeze(-1), None, {"global_scale": gs}, fake

    def decode(self, codes_g, scale, zero, extras, scheme):
        deq = scale.unsqueeze(-1) / extras["global_scale"]
        return decode_elements(codes_g, E2M1) * deq
