"""The mlx backend: mx.quantized_matmul on the MLX affine layout (Apple silicon; Linux CPU through mlx[cpu])."""

from __future__ import annotations

import sys

import torch

from .base import Backend


def _shape_ok(scheme, packing, device, in_features, out_features):
    if in_features % scheme.effective_group_size(in_features):
        return f"group_size={scheme.group_size} does not divide in_features={in_features}"
    return None


BACKEND = Backend(
    name="mlx",
    devices=("cpu", "mps"),
    packings=("mlx",),
    data_types=("int",),
    bits=(2, 3, 4, 5, 6, 8),
    group_sizes=(32, 64, 128),
    modules="ar_kernels.mlx_linear:MLX_MODULES",
    priority=5,
    auto_devices=("cpu", "mps") if sys.platform == "darwin" else (),
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    requires=("mlx",),
    install="pip install 'ar-kernels[mlx]'",
    checks=(_shape_ok,),
    description="mx.quantized_matmul; automatic on macOS, by name elsewhere (mlx[cpu] on Linux)",
)
