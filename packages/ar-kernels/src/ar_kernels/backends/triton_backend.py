"""The triton backend: fused dequantize-GEMM (prefill) and split-K GEMV (decode) for GPTQ-order int 2/4/8-bit.

Runs on CUDA, and on CPU tensors when TRITON_INTERPRET=1 is set (tests). triton is imported only when a layer runs.
"""

from __future__ import annotations

import os

import torch

from .base import Backend


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _device_ok(scheme, packing, device, in_features, out_features):
    if device == "cpu" and not _interpreter_on():
        return "device 'cpu' needs TRITON_INTERPRET=1 (triton kernels run on CUDA)"
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def _shape_ok(scheme, packing, device, in_features, out_features):
    gs = scheme.effective_group_size(in_features)
    if in_features % 32:
        return f"in_features={in_features} is not a multiple of 32"
    if in_features % gs or gs % 32:
        return f"group_size={scheme.group_size} must be a multiple of 32 dividing in_features={in_features}"
    return None


BACKEND = Backend(
    name="triton",
    devices=("cuda", "cpu"),
    packings=("gptq", "gptq_v2"),
    data_types=("int",),
    bits=(2, 4, 8),
    modules="ar_kernels.triton_linear:TRITON_MODULES",
    priority=2,
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    requires=("triton",),
    install="pip install 'ar-kernels[triton]'",
    checks=(_shape_ok, _device_ok),
    auto_devices=("cuda",),
    description="fused dequantize-GEMM for M>=16, split-K GEMV for decode",
)
