"""The mlx backend (mx.quantized_matmul on Linux CPU via mlx[cpu]) against float64 and the torch reference."""

import pytest
import torch

pytest.importorskip("mlx.core")

from ar_core.errors import PluginError  # noqa: E402
from ar_kernels.backends import select_backend  # noqa: E402
from ar_kernels.mlx_linear import MLXNativeLinear  # noqa: E402
from ar_kernels.testing import random_int_qt  # noqa: E402

TOL = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("group_size", [32, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_quantized_matmul_matches_float64(bits, group_size, dtype):
    qt = random_int_qt(48, 128, bits, group_size, sym=bits != 3, seed=bits)
    module = MLXNativeLinear.from_quantized(qt, torch.randn(48))
    gs = group_size
    w64 = (module.scales.double().repeat_interleave(gs, 1) * qt.codes.double()
           + module.biases.double().repeat_interleave(gs, 1))
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(0))
    ref = x.double() @ w64.t() + module.bias.double()
    y = module(x.to(dtype))
    assert y.dtype == dtype and y.shape == (2, 5, 48)
    assert float((y.double() - ref).norm() / ref.norm()) < TOL[dtype]


def test_mlx_is_picked_by_name_on_linux_and_refuses_other_layouts():
    scheme = random_int_qt(32, 64, 4, 32).scheme
    chosen, _ = select_backend(scheme, "mlx", "cpu", 64, 32, backend="mlx")
    assert chosen.name == "mlx" and chosen.module_class("mlx") is MLXNativeLinear
    with pytest.raises(PluginError, match=r"layer 'm.q'.*packing 'gptq' not in \['mlx'\]"):
        select_backend(scheme, "gptq", "cpu", 64, 32, backend="mlx", layer="m.q")
