"""Torch reference QuantLinear modules, one per checkpoint layout."""

from .awq import AWQLinear
from .base import QuantLinear
from .fp import FP8Linear, MXFP4Linear, MXFP8Linear, NVFP4Linear
from .gptq import GPTQLinear
from .mlx import MLXLinear

TORCH_MODULES: dict[str, type[QuantLinear]] = {
    p: cls for cls in (GPTQLinear, AWQLinear, MLXLinear, MXFP4Linear, MXFP8Linear, NVFP4Linear, FP8Linear)
    for p in cls.packings
}
PACKINGS = tuple(TORCH_MODULES)

__all__ = ["AWQLinear", "FP8Linear", "GPTQLinear", "MLXLinear", "MXFP4Linear", "MXFP8Linear", "NVFP4Linear",
           "PACKINGS", "QuantLinear", "TORCH_MODULES"]
