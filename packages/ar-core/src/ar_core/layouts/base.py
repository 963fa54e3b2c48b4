"""`Layout`: one packing's tensors, both ways (QuantizedTensor -> stored tensors -> QuantizedTensor), and the registry.

A layout names the tensors a format stores for one quantized Linear (local names such as `qweight`, `weight_scale`),
their expected shapes and dtypes for a scheme, `to_tensors` (what writers store and QuantLinear modules hold) and
`from_tensors` (what the loader and `convert` read back: exact codes, scales and zero points). Shapes use in = K,
out = N, groups per row = G. Writers, kernels and the loader resolve layouts here by name (`get_layout`).
"""

from __future__ import annotations

import torch

from ..errors import ArError, CheckpointError, field_error
from ..qtensor import QuantizedTensor
from ..scheme import QuantScheme

# tensor name -> (shape or None when any, allowed dtypes or None when any)
Shapes = dict[str, tuple[tuple[int, ...] | None, tuple[torch.dtype, ...] | None]]


def describe(scheme: QuantScheme) -> str:
    """Short text of a scheme for error messages."""
    return f"; bits={scheme.bits}, group_size={scheme.group_size}, sym={scheme.sym}, data_type={scheme.data_type}"


def expect(layer: str, tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...] | None,
           dtypes: tuple[torch.dtype, ...] | None = None, what: str = "") -> torch.Tensor:
    """Fetch tensors[name] and check its shape and dtype, raising a CheckpointError that names layer and mismatch."""
    if name not in tensors:
        raise CheckpointError(f"layer {layer!r}: tensor {name!r} is missing (have {sorted(tensors)}){what}")
    t = tensors[name]
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise CheckpointError(f"layer {layer!r}: {name} has shape {list(t.shape)} but the quantization config "
                              f"({what.strip('; ') or 'scheme'}) implies {list(shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise CheckpointError(f"layer {layer!r}: {name} has dtype {t.dtype}, expected one of {list(dtypes)}")
    return t


def per_row_groups(t: torch.Tensor, out_features: int) -> torch.Tensor:
    """Scale/zero [out, G]; a per-tensor [1, 1] record is broadcast to one group per row."""
    if t.shape[0] == 1 and out_features != 1:
        return t.expand(out_features, t.shape[1])
    return t


def group_count(scheme: QuantScheme, in_features: int) -> int:
    """Groups per row along the input dim (1 for per-channel and per-tensor schemes)."""
    return -(-in_features // scheme.effective_group_size(in_features))


def int_zero(qt: QuantizedTensor) -> torch.Tensor:
    """Integer zero points [N, G] as int64 (sym records carry 2^(bits-1))."""
    if qt.zero is None:
        raise field_error(ArError, "zero", None, f"an int32 zero point for data_type {qt.scheme.data_type!r}")
    return qt.zero.to(torch.int64)


class Layout:
    """One packing. Subclasses set `name` and `stores` (the kind of weight tensor the loader expects to find:
    "qweight", "weight_packed", "mlx", "int8" or "float8") and implement `refusal`, `shapes`, `to_tensors` and
    `from_tensors`."""

    name: str = ""
    stores: str = ""

    def refusal(self, scheme: QuantScheme, in_features: int, out_features: int) -> str | None:
        """Why this layout cannot hold a layer of `scheme` (None when it can)."""
        raise NotImplementedError

    def check_scheme(self, scheme: QuantScheme, in_features: int, out_features: int) -> None:
        """Raise ArError naming the scheme when `refusal` gives a reason."""
        why = self.refusal(scheme, in_features, out_features)
        if why is not None:
            raise field_error(ArError, "scheme", f"{scheme.data_type} {scheme.bits}-bit group_size="
                              f"{scheme.group_size}", f"packing {self.name!r}: {why}")

    def shapes(self, scheme: QuantScheme, in_features: int, out_features: int) -> Shapes:
        """The tensors a layer of this shape stores: name -> (shape, dtypes); optional ones are left out."""
        raise NotImplementedError

    def read(self, tensors: dict[str, torch.Tensor], scheme: QuantScheme, in_features: int, out_features: int,
             layer: str = "?") -> dict[str, torch.Tensor]:
        """The checked tensors of `shapes` (CheckpointError naming the layer and the mismatch)."""
        self.check_scheme(scheme, in_features, out_features)
        what = describe(scheme)
        return {name: expect(layer, tensors, name, shape, dtypes, what)
                for name, (shape, dtypes) in self.shapes(scheme, in_features, out_features).items()}

    def to_tensors(self, qt: QuantizedTensor, **options) -> dict[str, torch.Tensor]:
        """The tensors this packing stores for a record ({local name: tensor}, replacing `<layer>.weight`)."""
        raise NotImplementedError

    def from_tensors(self, tensors: dict[str, torch.Tensor], scheme: QuantScheme, in_features: int,
                     out_features: int, layer: str = "?") -> QuantizedTensor:
        """The record the stored tensors stand for (exact codes, scales, zeros; CheckpointError on a mismatch)."""
        raise NotImplementedError


LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Register a layout under its name (one object per packing; a second one under the same name is refused)."""
    if layout.name in LAYOUTS and LAYOUTS[layout.name] is not layout:
        raise field_error(ArError, "layout.name", layout.name, f"a name not yet registered ({sorted(LAYOUTS)})")
    LAYOUTS[layout.name] = layout
    return layout


def get_layout(name: str) -> Layout:
    """The registered layout of packing `name` (ArError listing the known packings)."""
    if name not in LAYOUTS:
        raise field_error(ArError, "packing", name, f"one of {sorted(LAYOUTS)}")
    return LAYOUTS[name]
