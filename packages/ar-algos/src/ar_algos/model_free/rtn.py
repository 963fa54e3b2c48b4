"""Plain RTN of one int weight-only layer in row chunks: the same record `ar_core.quant.quantize` returns, in fewer
and cheaper passes.

The regular `quantize` converts the whole weight to float32, groups it, computes the fake-quantized weight that
only tuners need and walks every temporary through main memory. Here a chunk of rows (a few hundred thousand
values, so its float32 temporaries stay in the CPU cache) is converted, its per-group scale and zero come from the
int data type's own `scale_zero`, and the codes are made in place (divide, round, add the zero, clamp) straight
into the uint8 result. Every value goes through the same float32 operations in the same order as `IntType.encode`,
so codes, scales and zeros are bit for bit the regular path's (tested).
"""

from __future__ import annotations

import torch

from ar_core.qtensor import QuantizedTensor
from ar_core.quant import get_data_type, group_count, resolve_group_size
from ar_core.scheme import QuantScheme

CHUNK_VALUES = 1 << 19  # values per chunk: 2 MiB of float32 per temporary


def handles(scheme: QuantScheme) -> bool:
    """Whether `quantize_rows` produces this scheme: grouped or per-channel int weight-only (not per tensor)."""
    return (scheme.is_quantized and scheme.data_type == "int" and not scheme.quantizes_activations
            and scheme.group_size != 0)


def quantize_rows(w: torch.Tensor, scheme: QuantScheme) -> QuantizedTensor:
    """RTN of the 2-D weight `w` with `scheme` (one `handles` accepts), chunk by chunk over its rows."""
    int_type = get_data_type("int")
    rows, cols = w.shape
    gs = resolve_group_size(scheme.group_size, cols)
    groups = group_count(cols, gs)
    codes = torch.empty((rows, cols), dtype=torch.uint8)
    scale = torch.empty((rows, groups), dtype=torch.float32)
    zero = torch.empty((rows, groups), dtype=torch.int32)
    step = max(1, CHUNK_VALUES // (groups * gs))
    top = 2**scheme.bits - 1
    for r in range(0, rows, step):
        part = w[r:r + step].to(torch.float32, copy=True)  # a copy: the in-place steps below never touch `w`
        wg = int_type.group(part, scheme)
        s, z = int_type.scale_zero(wg, scheme)
        x = wg.div_(s).round_().add_(z).clamp_(0, top)
        codes[r:r + step] = int_type.ungroup(x, tuple(part.shape), scheme)
        scale[r:r + step] = s.squeeze(-1)
        zero[r:r + step] = z.squeeze(-1)
    return QuantizedTensor(codes=codes, scale=scale, zero=zero, scheme=scheme, shape=(rows, cols))
