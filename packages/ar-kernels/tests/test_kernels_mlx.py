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


def test_load_mlx_checkpoint_with_mlx_backend(tmp_path):
    from ar_kernels import load
    from ar_kernels.qlinear import TORCH_MODULES
    from ar_kernels.testing import quantize_block_linears, save_quantized, tiny_llama

    model = tiny_llama()
    layers = quantize_block_linears(model, sym=False, packing="mlx")
    ref = save_quantized(tmp_path, model, layers, {"quantization": {"group_size": 32, "bits": 4}})
    for name, (qt, _) in layers.items():  # the stored fp16 biases are the format's truth
        ref.get_submodule(name).weight.data = TORCH_MODULES["mlx"].from_quantized(qt).dequantize_weight()
    loaded = load(tmp_path, backend="mlx", dtype=torch.float32)
    assert {b for b, _ in loaded.ar_backends.values()} == {"mlx"}
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = loaded(ids).logits, ref(ids).logits
    assert float((got - want).norm() / want.norm()) < 1e-4
    assert loaded.generate(ids[:, :3], max_new_tokens=2, do_sample=False).shape == (1, 5)
