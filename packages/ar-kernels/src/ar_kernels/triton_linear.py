"""`TritonGPTQLinear`: GPTQ-order buffers like the torch reference, forward through the triton kernels."""

from __future__ import annotations

import torch

from .qlinear.gptq import GPTQLinear


class TritonGPTQLinear(GPTQLinear):
    """GPTQ-order int 2/4/8-bit layer running the fused triton GEMM (M >= 16) or split-K GEMV (decode).

    A g_idx that is not the plain k // group_size (act-order) falls back to the dequantize + matmul path.
    """

    def _plain_groups(self) -> bool:
        if self.g_idx is None:
            return True
        flag = getattr(self, "_plain", None)
        if flag is None:
            expect = torch.arange(self.in_features, device=self.g_idx.device) // self.group_size
            flag = self._plain = bool(torch.equal(self.g_idx.to(torch.int64), expect))
        return flag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x @ W^T (+ bias) through the triton kernels."""
        if not self._plain_groups():
            return super().forward(x)
        from .triton_kernels import gptq_matmul

        x = self.quantized_input(x)
        flat = x.reshape(-1, self.in_features)
        y = gptq_matmul(flat, self.qweight, self.scales, self.qzeros, self.scheme.bits, self.group_size,
                        self.packing == "gptq")
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


TRITON_MODULES = {"gptq": TritonGPTQLinear, "gptq_v2": TritonGPTQLinear}
