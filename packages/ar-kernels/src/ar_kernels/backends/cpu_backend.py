"""The cpu backend: int 2/3/4/8-bit GPTQ/AWQ-order layers repacked at load (qlinear.cpu.CPUIntLinear).

4-bit layers with group size 32/64/128/256 run PyTorch's int4 CPU kernel; other int layers dequantize with
vectorised int32 unpacking. Automatic selection picks it on CPU over the torch reference.
"""

from ..qlinear.cpu import BITS, kernel_path
from .base import Backend


def _detail(scheme, packing, device, in_features, out_features) -> str:
    return kernel_path(scheme, in_features, out_features)


BACKEND = Backend(
    name="cpu",
    devices=("cpu",),
    packings=("gptq", "gptq_v2", "awq"),
    data_types=("int",),
    bits=BITS,
    modules="ar_kernels.qlinear.cpu:CPU_MODULES",
    priority=1,
    detail=_detail,
    description="repacked at load: PyTorch's int4 CPU kernel for 4-bit g32-256, vectorised unpack otherwise",
)
