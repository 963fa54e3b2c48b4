"""`QuantLinear`: the base of every packed linear layer (buffers in a checkpoint layout, dequantize, matmul)."""

from __future__ import annotations

import torch
from torch import nn

from ar_core.errors import ArError, field_error
from ar_core.layouts import Layout, get_layout
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme


class QuantLinear(nn.Module):
    """A linear layer whose weight lives in packed buffers; subclasses define one layout each.

    Subclasses implement `dequantize_weight()` (float32 [out, in]) and the constructors `from_quantized`
    (QuantizedTensor record -> packed buffers) and `from_tensors` (checkpoint tensors -> module, validated).
    `forward` quantizes the input when the checkpoint quantizes activations (`input_quant`, see qlinear.act), then
    dequantizes (or reuses the cached weight when `cache_weight` is set) and multiplies in the input dtype.
    `packings` lists the packing names a class holds; the tensors of each are those of its `ar_core.layouts`
    Layout (`layout`), which both builds them from a record and checks them when read from a checkpoint.
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

    @property
    def layout(self) -> Layout:
        """The registered Layout of this module's packing."""
        return get_layout(self.packing)

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
    def from_quantized(cls, qt: QuantizedTensor, bias: torch.Tensor | None = None, packing: str | None = None,
                       **options):
        """Pack a QuantizedTensor record with its packing's Layout (`options` go to `Layout.to_tensors`; packing
        defaults to the class's first) and build the module from those tensors, as from a checkpoint."""
        packing = packing or cls.packings[0]
        tensors = get_layout(packing).to_tensors(qt, **options)
        if bias is not None:
            tensors["bias"] = bias
        return cls.from_tensors(tensors, qt.in_features, qt.out_features, qt.scheme, packing)

    @classmethod
    def _read(cls, tensors: dict[str, torch.Tensor], in_features: int, out_features: int, scheme: QuantScheme,
              packing: str, layer: str) -> dict[str, torch.Tensor]:
        """The checked tensors of `packing` (its Layout's `read`); a packing this class does not hold is refused."""
        if packing not in cls.packings:
            raise field_error(ArError, "packing", packing, f"one of {list(cls.packings)} for {cls.__name__}")
        return get_layout(packing).read(tensors, scheme, in_features, out_features, layer)

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], in_features: int, out_features: int,
                     scheme: QuantScheme, packing: str, layer: str = "?"):
        """Build from checkpoint tensors (local names), raising CheckpointError when they do not fit the scheme."""
        raise NotImplementedError


def group_length(scheme: QuantScheme, in_features: int) -> int:
    """Elements per group along the input dim (whole row for per-channel and per-tensor schemes)."""
    return scheme.effective_group_size(in_features)
