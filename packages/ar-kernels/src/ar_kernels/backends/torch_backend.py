"""The torch reference backend: every packing, every device, dequantize then matmul in the input dtype."""

from ar_core.quant import data_type_names, get_data_type

from ..qlinear import PACKINGS
from .base import Backend

BACKEND = Backend(
    name="torch",
    devices=("cpu", "cuda", "mps", "xpu"),
    packings=PACKINGS,
    data_types=("int", "mx_fp", "mx_fp_rceil", "mx_int", "nv_fp", "fp"),
    bits=tuple(sorted({b for n in data_type_names() for b in get_data_type(n).bits if b < 16})),
    modules="ar_kernels.qlinear:TORCH_MODULES",
    priority=0,
    description="reference: dequantize in float32 (optionally cached), matmul in the input dtype",
)
