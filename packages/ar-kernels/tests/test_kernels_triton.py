"""Triton GPTQ kernels (GEMM and split-K GEMV) against a float64 dequantize + matmul.

On CPU they run under TRITON_INTERPRET=1, set here before the kernels module is imported (the flag is read when the
kernels are decorated). CUDA tests run when a GPU is present.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from ar_core.errors import PluginError  # noqa: E402
from ar_kernels.backends import select_backend  # noqa: E402
from ar_kernels.testing import random_int_qt, reference_weight  # noqa: E402
from ar_kernels.triton_linear import TritonGPTQLinear  # noqa: E402

TOL = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 2e-2}
interpreted = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                 reason="CPU triton needs TRITON_INTERPRET=1 (set when no GPU is present)")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")  # with @pytest.mark.cuda: `pytest -m cuda`


def _run(bits, packing, sym, m, dtype, device="cpu", k=128, n=96, lead=(), group_size=32):
    qt = random_int_qt(n, k, bits, group_size, sym, seed=bits + m)
    module = TritonGPTQLinear.from_quantized(qt, torch.randn(n), packing).to(device)
    x = torch.randn(*lead, m, k, generator=torch.Generator().manual_seed(m))
    ref = x.double() @ reference_weight(qt).t() + module.bias.double().cpu()
    y = module(x.to(device=device, dtype=dtype))
    assert y.dtype == dtype and y.shape == (*lead, m, n)
    err = float((y.double().cpu() - ref).norm() / ref.norm())
    assert err < TOL[dtype], err


CASES = [(b, p, s) for b in (2, 4, 8) for p, s in (("gptq", True), ("gptq_v2", False), ("gptq", False))]


@interpreted
@pytest.mark.parametrize("bits,packing,sym", CASES)
@pytest.mark.parametrize("m", [1, 5, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreted_kernels(bits, packing, sym, m, dtype):
    _run(bits, packing, sym, m, dtype)


@interpreted
def test_interpreted_split_k_bf16_and_batched_input():
    _run(4, "gptq", True, 2, torch.float32, k=1024, n=64)
    _run(4, "gptq_v2", False, 16, torch.bfloat16, k=256, n=64)
    _run(4, "gptq", True, 3, torch.float16, lead=(2,))


@interpreted
def test_act_order_g_idx_falls_back_to_dequantize():
    qt = random_int_qt(32, 64, 4, 32, True)
    module = TritonGPTQLinear.from_quantized(qt, None, "gptq", g_idx=True)
    module.g_idx = module.g_idx.flip(0)
    x = torch.randn(3, 64)
    g = module.g_idx.long()
    q, z = module.codes_and_zeros()
    w = (module.scales.double()[g] * (q.double() - z.double()[g])).t()
    assert torch.allclose(module(x).double(), x.double() @ w.t(), atol=1e-5)


def test_selection_on_cpu_needs_name_and_interpreter(monkeypatch):
    scheme = random_int_qt(32, 64, 4, 32).scheme
    chosen, reason = select_backend(scheme, "gptq", "cpu", 64, 32)
    assert chosen.name == "cpu" and "triton" in reason
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend(scheme, "gptq", "cpu", 64, 32, backend="triton")[0].name == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(PluginError, match="TRITON_INTERPRET"):
        select_backend(scheme, "gptq", "cpu", 64, 32, backend="triton", layer="model.x")


@interpreted
@pytest.mark.parametrize("group_size", [64, 128, -1])
def test_interpreted_group_sizes_and_per_channel(group_size):
    _run(4, "gptq_v2", False, 1, torch.float32, k=256, group_size=group_size)
    _run(2, "gptq", True, 20, torch.float32, k=256, group_size=group_size)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("bits,packing,sym", CASES)
@pytest.mark.parametrize("m", [1, 7, 64])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group_size", [32, 64, 128, -1])
def test_cuda_kernels(bits, packing, sym, m, dtype, group_size):
    _run(bits, packing, sym, m, dtype, device="cuda", k=512, n=256, group_size=group_size)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_split_k_llama_shapes_and_batched_input(dtype):
    _run(4, "gptq", True, 1, dtype, device="cuda", k=4096, n=512, group_size=128)
    _run(4, "gptq_v2", False, 3, dtype, device="cuda", k=14336, n=256, group_size=128)
    _run(8, "gptq", False, 2048, dtype, device="cuda", k=1024, n=512, group_size=128)
    _run(4, "gptq", True, 5, dtype, device="cuda", k=512, n=256, lead=(2,))


@interpreted
def test_load_with_triton_backend(tmp_path):
    from ar_kernels import load
    from ar_kernels.testing import quantize_block_linears, save_quantized, tiny_llama

    model = tiny_llama()
    ref = save_quantized(tmp_path, model, quantize_block_linears(model, sym=False, packing="gptq_v2"), {
        "quantization_config": {"quant_method": "auto-round", "packing_format": "auto_round", "bits": 4,
                                "group_size": 32, "sym": False}})
    loaded = load(tmp_path, backend="triton", dtype=torch.float32)
    assert {b for b, _ in loaded.ar_backends.values()} == {"triton"}
    assert isinstance(loaded.model.layers[0].mlp.up_proj, TritonGPTQLinear)
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = loaded(ids).logits, ref(ids).logits
    assert float((got - want).norm() / want.norm()) < 1e-4
