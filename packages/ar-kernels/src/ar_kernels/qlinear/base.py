"""`QuantLinear`: the base of every packed linear layer (buffers in a checkpoint layout, dequantize, matmul)."""

from __future__ import annotations

import torch
from torch import nn

from ar_core.errors import CheckpointError
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme


class QuantLinear(nn.Module):
    """A linear layer whose weight lives in packed buffers; subclasses define one layout each.

    Subclasses implement `dequantize_weight()` (float32 [out, in]) and the constructors `from_quantized`
    (QuantizedTensor record -> packed buffers) and `from_tensors` (checkpoint tensors -> module, validated).
    `forward` quantizes the input when the checkpoint quantizes activations (`input_quant`, see qlinear.act), then
    dequantizes (or reuses the cached weight when `cache_weight` is set) and multiplies in the input dtype.
    `packings` lists the layout names a class holds.
    """

    packings: tuple[str, ...] = ()

    def __init__(self, in_features: int, out_features: int, scheme: QuantScheme, packing: str,
                 bias: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.scheme, self.packing = scheme, packing
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.cache_weight = False
        self._cached: torch.Tensor | None = None
        self.input_quant: nn.Module | None = None

    def dequantize_weight(self) -> torch.Tensor:
        """The float32 [out, in] weight the packed buffers stand for."""
        raise NotImplementedError

    def weight_for(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Dequantized weight in `dtype` on `device`, cached when `cache_weight` is True."""
        cached = self._cached
        if cached is not None and cached.dtype == dtype and cached.device == device:
            return cached
        w = self.dequantize_weight().to(device=device, dtype=dtype)
        self._cached = w if self.cache_weight else None
        return w

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        """x as the layer multiplies it: quantized and dequantized by `input_quant` when set, else unchanged."""
        return x if self.input_quant is None else self.input_quant(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x @ W^T (+ bias), computed in x's dtype (after the input's activation quantization, if any)."""
        x = self.quantized_input(x)
        w = self.weight_for(x.dtype, x.device)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return nn.functional.linear(x, w, bias)

    def extra_repr(self) -> str:
        s = self.scheme
        return (f"in_features={self.in_features}, out_features={self.out_features}, packing={self.packing}, "
                f"bits={s.bits}, group_size={s.group_size}, sym={s.sym}, data_type={s.data_type}")

    @classmethod
    def from_quantized(cls, qt: QuantizedTensor, bias: torch.Tensor | None = None, packing: str | None = None):
        """Pack a QuantizedTensor record into this layout."""
        raise NotImplementedError

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], in_features: int, out_features: int,
                     scheme: QuantScheme, packing: str, layer: str = "?"):
        """Build from checkpoint tensors (local names), raising CheckpointError when they do not fit the scheme."""
        raise NotImplementedError


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


def describe(scheme: QuantScheme) -> str:
    """Short text of a scheme for error messages."""
    return f"; bits={scheme.bits}, group_size={scheme.group_size}, sym={scheme.sym}, data_type={scheme.data_type}"


def group_length(scheme: QuantScheme, in_features: int) -> int:
    """Elements per group along the input dim (whole row for per-channel and per-tensor schemes)."""
    return scheme.effective_group_size(in_features)


def per_row_groups(t: torch.Tensor, out_features: int) -> torch.Tensor:
    """Scale/zero [out, G]; a per-tensor [1, 1] record is broadcast to one group per row."""
    if t.shape[0] == 1 and out_features != 1:
        return t.expand(out_features, t.shape[1])
    return t
