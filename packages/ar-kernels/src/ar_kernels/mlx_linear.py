"""`MLXNativeLinear`: the MLX affine layout multiplied by mx.quantized_matmul (mlx imported on first forward)."""

from __future__ import annotations

import numpy as np
import torch

from .qlinear.base import group_length
from .qlinear.mlx import MLXLinear

_NP = {torch.float16: np.float16, torch.float32: np.float32}


class MLXNativeLinear(MLXLinear):
    """MLX-layout layer whose forward converts the input to an mx.array and calls mx.quantized_matmul.

    Computes in float16 for fp16 inputs and float32 otherwise (numpy, the bridge, has no bfloat16).
    """

    def _mx_params(self, np_dtype):
        import mlx.core as mx

        key = (np_dtype, self.weight.data_ptr())
        cached = getattr(self, "_mx_cache", None)
        if cached is None or cached[0] != key:
            w = mx.array(self.weight.cpu().numpy())
            s = mx.array(self.scales.float().cpu().numpy().astype(np_dtype))
            b = mx.array(self.biases.float().cpu().numpy().astype(np_dtype))
            cached = self._mx_cache = (key, (w, s, b))
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x @ W^T (+ bias) via mx.quantized_matmul."""
        import mlx.core as mx

        x = self.quantized_input(x)
        np_dtype = _NP.get(x.dtype, np.float32)
        w, s, b = self._mx_params(np_dtype)
        xin = mx.array(x.detach().reshape(-1, self.in_features).cpu().float().numpy().astype(np_dtype))
        y = mx.quantized_matmul(xin, w, s, b, transpose=True, bits=self.scheme.bits,
                                group_size=group_length(self.scheme, self.in_features))
        out = torch.from_numpy(np.array(y.astype(mx.float32))).to(device=x.device, dtype=x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


MLX_MODULES = {"mlx": MLXNativeLinear}
