"""A save context built from shapes alone, so a registered format writer can pack layers and describe the
checkpoint without a model object.

Writers read `quantized` (records: scheme and shape), `linears` (layer names in model order), `run_info`,
`dtype` and `request` (the ExportRequest of these records); the records here are placeholders on the meta device until a real one is packed.
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.export_request import build_request
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme


def placeholder(scheme: QuantScheme, shape: tuple[int, int]) -> QuantizedTensor:
    """A record with the right scheme and shape and no data (meta tensors)."""
    meta = torch.empty(shape, device="meta")
    return QuantizedTensor(codes=meta, scale=meta, zero=meta, scheme=scheme, shape=tuple(shape))


class ShapeContext:
    """Stand-in for the exporter's SaveContext: `layers` is [(name, scheme, (out, in))] for every linear layer in
    model order (16-bit ones included); `dtype` is the dtype of the 16-bit tensors."""

    model = None

    def __init__(self, layers: list[tuple[str, QuantScheme, tuple[int, int]]], run_info: dict[str, Any],
                 dtype: torch.dtype):
        self.linears = {name: None for name, _, _ in layers}
        self.quantized = {name: placeholder(s, shape) for name, s, shape in layers if s.is_quantized}
        self.run_info = run_info
        self.dtype = dtype
        self.request = build_request(self.quantized, run_info)

    @property
    def unquantized(self) -> list[str]:
        """Linear layers kept in 16 bits."""
        return [n for n in self.linears if n not in self.quantized]
