"""Round-to-nearest and optimized RTN (imatrix-weighted parameter search) on the layers of one block."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ar_core.qtensor import QuantizedTensor
from ar_core.quant import quantize
from ar_core.scheme import QuantScheme

from .blocks import weight_of, write_weight
from .records import record_to_cpu


def rtn_layers(layers: dict[str, nn.Module], schemes: dict[str, QuantScheme],
               imatrix: dict[str, torch.Tensor] | None = None) -> dict[str, QuantizedTensor]:
    """Quantize each layer of `layers` with its scheme, write the dequantized weight back, return the records.

    With `imatrix` (per-input-channel activation energy per layer) the data type's optimized-RTN search runs,
    weighted by it; a layer that saw no tokens (an idle expert) is searched unweighted.
    """
    records = {}
    for name, scheme in schemes.items():
        layer = layers[name]
        weights = None
        if imatrix is not None:
            weights = imatrix.get(name)
            weights = weights if weights is not None and weights.sum() > 0 else None
        qt = quantize(weight_of(layer).detach(), scheme, search=imatrix is not None, imatrix=weights)
        write_weight(layer, qt.dequantize())
        records[name] = record_to_cpu(qt)
    return records


@contextmanager
def collect_inputs(layers: dict[str, nn.Module], statistic, combine) -> Iterator[dict[str, torch.Tensor]]:
    """While active, keep per layer `combine(previous, statistic(input))` over every forward in the yielded dict
    (inputs with no elements are skipped)."""
    stats: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(_module, args):
            x = args[0].detach()
            if x.numel() == 0:
                return
            value = statistic(x)
            stats[name] = combine(stats[name], value) if name in stats else value
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


def collect_imatrix(layers: dict[str, nn.Module]):
    """While active, sum x^2 per input channel of every layer's input (over all tokens) into the yielded dict."""
    return collect_inputs(layers, lambda x: x.float().reshape(-1, x.shape[-1]).pow(2).sum(0), torch.add)
