"""The data-type interface and its registry: one small class per data type (int, mx_fp, nv_fp, fp, GGUF ...).

A class owns every fact about its data type: the bit widths it holds (`bits`), the scheme rules it adds (`check`),
its storage kind (`storage_kind`, what the export formats and the bits accounting file it under), the bits of its
scales and zero points (`param_bits`), the layer shapes it cannot hold (`shape_fallback`), the name readers know it
by (`checkpoint_name`) and its quantize-dequantize math (`encode`, `decode`). The classes live in
`ar_core.registry.DATA_TYPES`, filled by `register_data_type` and by the "ar.data_types" entry points.
"""

from __future__ import annotations

import torch

from ..errors import SchemeError, field_error
from ..qtensor import QuantizedTensor
from ..registry import DATA_TYPES, get_data_type  # noqa: F401  (get_data_type re-exported by ar_core.quant)
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
    bits: tuple[int, ...] = ()  # the bit widths a scheme of this data type may have
    kind: str = ""  # storage kind (see `storage_kind`)
    block_groups = False  # whether group_size may be an (m, n) 2-D block
    fixed_group_size: int | None = None  # the one group size a quantized scheme must use (MX: 32, NVFP: 16)
    gguf_types: dict[int, str] = {}  # bits -> the llama.cpp block type implied when the scheme names none
    checkpoint_name: str | None = None  # the data_type written to checkpoints when readers know it by another name

    def check(self, scheme: QuantScheme) -> None:
        """Raise SchemeError when `scheme` breaks a rule of this data type (bits are checked against `bits` first).
        By default only the GGUF double-quant types take super_bits / super_group_size."""
        need = self.fixed_group_size
        if need is not None and scheme.bits < 16:
            if not scheme.sym:
                raise field_error(SchemeError, "sym", scheme.sym, f"data_type {self.name!r} is symmetric only")
            if scheme.group_size != need:
                raise field_error(SchemeError, "group_size", scheme.group_size, f"data_type {self.name!r} needs {need}")
        if scheme.super_bits is not None or scheme.super_group_size is not None:
            raise field_error(SchemeError, "super_bits", scheme.super_bits,
                              "only for GGUF double-quant data types (*_dq)")

    def storage_kind(self, scheme: QuantScheme) -> str:
        """Storage family of a quantized `scheme`: int_sym, int_asym, int_w8a8, int_act, mx_fp, mx_int, nv_fp,
        fp8_weight, fp8_static, fp8_dynamic, fp8_block or gguf. Writers and the capability table dispatch on it."""
        if not self.kind:
            raise field_error(SchemeError, "data_type", self.name, "a data type that declares its storage kind")
        return self.kind

    def param_bits(self, scheme: QuantScheme, groups: int, scale_bits: int) -> int:
        """Bits of everything but the codes for `groups` groups: by default one `scale_bits`-wide scale each."""
        return groups * scale_bits

    def shape_fallback(self, n_in: int, n_out: int, scheme: QuantScheme,
                       gguf_format: bool) -> tuple[QuantScheme, str] | None:
        """The scheme a [n_out, n_in] layer gets instead of `scheme` and why, or None when it holds `scheme`.
        By default a positive group_size larger than n_in becomes one group per output channel; a data type with
        a fixed group size keeps a layer whose n_in it does not divide in 16 bits (weights and activations)."""
        gs = scheme.group_size
        if self.fixed_group_size is not None:
            if n_in % gs:
                return QuantScheme(bits=16, data_type="float"), \
                    f"in_features={n_in} is not a multiple of {self.name} group_size={gs}"
            return None
        if isinstance(gs, int) and gs > n_in:
            return scheme.replace(group_size=-1), f"group_size={gs} > in_features={n_in}: one group per channel"
        return None

    def stored_name(self) -> str:
        """The data_type written to checkpoints."""
        return self.checkpoint_name or self.name

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


def register_data_type(cls: type[DataType]) -> type[DataType]:
    """Class decorator: make `cls` the implementation of `cls.name` (add a data type by writing one class)."""
    DATA_TYPES.register(cls.name, cls())
    return cls


def data_type_names() -> list[str]:
    """Names of every registered data type."""
    return DATA_TYPES.names()


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
