"""The data-type interface and its registry: one small class per data type (int, mx_fp, nv_fp, fp, GGUF ...)."""

from __future__ import annotations

import torch

from ..errors import SchemeError, field_error
from ..qtensor import QuantizedTensor
from ..scheme import QuantScheme
from .groups import from_groups, resolve_group_size, to_groups

SCALE_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
SCALE_THRESHOLD = {"float16": 1e-5, "bfloat16": 1e-5, "float32": 1e-8}


class DataType:
    """Quantize-dequantize math for one `scheme.data_type`.

    Subclasses implement `encode` (differentiable: grouped weight -> codes, scale, zero, extras, fake-quantized
    groups) and `decode` (codes + parameters -> grouped weight). `fake`, `quantize` and `dequantize` are built on
    those two, so `quantize(...).dequantize()` equals `fake(...)` bit for bit.
    """

    name: str = ""

    def group(self, w: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
        """[out, in] -> [rows, G, gs]; per-tensor schemes (group_size 0) become one group of the whole tensor."""
        if scheme.group_size == 0:
            return w.reshape(1, 1, -1)
        return to_groups(w, resolve_group_size(scheme.group_size, w.shape[1]))

    def ungroup(self, wg: torch.Tensor, shape: tuple[int, int], scheme: QuantScheme) -> torch.Tensor:
        """Inverse of `group`."""
        if scheme.group_size == 0:
            return wg.reshape(shape)
        return from_groups(wg, shape[1])

    def encode(self, wg, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False):
        """Return (codes, scale, zero, extras, fake_groups) for grouped weights `wg`."""
        raise NotImplementedError

    def decode(self, codes_g, scale, zero, extras, scheme) -> torch.Tensor:
        """Return grouped float32 weights from grouped codes and parameters."""
        raise NotImplementedError

    def tuning_start(self, wg, scheme, imatrix=None) -> dict:
        """`encode` options that make a tuner start from the optimized-RTN parameters of grouped weights `wg`.

        With v = 0 and min/max scales of 1, `encode(wg, scheme, ..., **options)` then equals the optimized-RTN
        result. Empty (start from plain RTN) for data types without such a start.
        """
        return {}

    def fake(self, w, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False,
             **opts) -> torch.Tensor:
        """Differentiable fake quantization of a 2-D weight (float32 out, straight-through rounding).

        `opts` are data-type specific (e.g. nv_fp's `global_scale`) and passed on to `encode`.
        """
        wg = self.group(w.float(), scheme)
        *_, fake_g = self.encode(wg, scheme, v, min_scale, max_scale, imatrix, search, **opts)
        return self.ungroup(fake_g, tuple(w.shape), scheme)

    def quantize(self, w, scheme, v=None, min_scale=None, max_scale=None, imatrix=None, search=False, **opts):
        """Quantize a 2-D weight into a QuantizedTensor (no gradients)."""
        with torch.no_grad():
            wg = self.group(w.float(), scheme)
            codes_g, scale, zero, extras, _ = self.encode(wg, scheme, v, min_scale, max_scale, imatrix, search,
                                                          **opts)
            codes = self.ungroup(codes_g, tuple(w.shape), scheme)
        return QuantizedTensor(codes=codes, scale=scale, zero=zero, scheme=scheme, shape=tuple(w.shape),
                               extras=extras)

    def dequantize(self, qt: QuantizedTensor) -> torch.Tensor:
        """Float32 weight of a QuantizedTensor."""
        codes_g = self.group(qt.codes, qt.scheme)
        wg = self.decode(codes_g, qt.scale, qt.zero, qt.extras, qt.scheme)
        return self.ungroup(wg, qt.shape, qt.scheme)


_DATA_TYPES: dict[str, DataType] = {}


def register_data_type(cls: type[DataType]) -> type[DataType]:
    """Class decorator: make `cls` the implementation of `cls.name` (add a data type by writing one class)."""
    _DATA_TYPES[cls.name] = cls()
    return cls


def get_data_type(name: str) -> DataType:
    """The registered implementation of `name`."""
    if name not in _DATA_TYPES:
        raise field_error(SchemeError, "data_type", name, f"one of {sorted(_DATA_TYPES)}")
    return _DATA_TYPES[name]


def data_type_names() -> list[str]:
    """Names of every registered data type."""
    return sorted(_DATA_TYPES)


def cast_scale(scale: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    """Round a scale through `scheme.scale_dtype` (keeping gradients, saturating at its largest finite value)."""
    target = SCALE_TORCH_DTYPES[scheme.scale_dtype]
    if target == torch.float32:
        return scale
    top = torch.finfo(target).max
    return scale + (scale.detach().clamp(-top, top).to(target).float() - scale).detach()


def expand_minmax(x: torch.Tensor | None, wg: torch.Tensor) -> torch.Tensor | None:
    """Clamp a per-group min/max scale to [0, 1] and shape it [rows, G, 1] for broadcasting."""
    if x is None:
        return None
    x = x.clamp(0, 1)
    return x.reshape(wg.shape[0], wg.shape[1], 1)
