"""Torch reference QuantLinear modules against a float64 dequantize + matmul of the same codes."""

import pytest
import torch

from ar_core.errors import ArError, CheckpointError
from ar_core.quant import quantize
from ar_core.scheme import QuantScheme
from ar_kernels.qlinear import TORCH_MODULES, GPTQLinear
from ar_kernels.testing import (random_fp8_qt, random_int_qt, random_mx_qt, random_nvfp4_qt,
                                reference_weight)

TOL = {torch.float32: 1e-3, torch.float16: 1e-2}


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double() - ref).norm() / ref.norm())


def _check(module, qt, bias=None, dtypes=(torch.float32, torch.float16)):
    w64 = reference_weight(qt)
    assert torch.allclose(module.dequantize_weight().double(), w64, rtol=1e-6, atol=1e-6 * float(w64.abs().max()))
    x = torch.randn(5, qt.in_features, generator=torch.Generator().manual_seed(1))
    ref = x.double() @ w64.t() + (0 if bias is None else bias.double())
    for dtype in dtypes:
        y = module(x.to(dtype))
        assert y.dtype == dtype and y.shape == (5, qt.out_features)
        assert _rel_err(y, ref) < TOL[dtype], dtype


INT_CASES = [(p, b, gs, sym) for p in ("gptq", "gptq_v2") for b in (2, 3, 4, 8)
             for gs, sym in ((32, True), (64, False))]


@pytest.mark.parametrize("packing,bits,group_size,sym", INT_CASES)
def test_gptq_layouts(packing, bits, group_size, sym):
    qt = random_int_qt(48, 128, bits, group_size, sym, seed=bits)
    bias = torch.randn(48)
    _check(GPTQLinear.from_quantized(qt, bias, packing), qt, bias)


def test_gptq_v1_refuses_zero_point_zero_as_the_writer_does():
    """One GPTQ v1 layout: zero 0 has no zero-1 code, so building the module refuses it like the auto_gptq writer;
    the raw-zero packing (gptq_v2) holds it, with g_idx."""
    qt = random_int_qt(32, 64, 4, 32, sym=False)
    qt.zero[0, 0] = 0
    with pytest.raises(ArError, match="zero points >= 1"):
        GPTQLinear.from_quantized(qt, None, "gptq", g_idx=True)
    module = GPTQLinear.from_quantized(qt, None, "gptq_v2", g_idx=True)
    assert module.g_idx.tolist() == [i // 32 for i in range(64)]
    _check(module, qt)


def test_gptq_permuted_g_idx_gathers_groups():
    qt = random_int_qt(32, 64, 4, 32, sym=True)
    module = GPTQLinear.from_quantized(qt, None, "gptq_v2", g_idx=True)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    module.g_idx = module.g_idx[perm]
    q, z = module.codes_and_zeros()
    g = module.g_idx.long()
    expect = module.scales.double()[g] * (q.double() - z.double()[g])
    assert torch.allclose(module.dequantize_weight().double(), expect.t())


def test_per_channel_and_per_tensor_int():
    for gs in (-1, 0):
        qt = random_int_qt(16, 64, 4, gs, sym=True)
        _check(GPTQLinear.from_quantized(qt, None, "gptq"), qt)


@pytest.mark.parametrize("sym", [True, False])
def test_awq_layout(sym):
    qt = random_int_qt(64, 96, 4, 32, sym)
    _check(TORCH_MODULES["awq"].from_quantized(qt), qt)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
def test_mlx_layout(bits):
    qt = random_int_qt(16, 128, bits, 64, sym=bits % 2 == 0, seed=bits)
    module = TORCH_MODULES["mlx"].from_quantized(qt)
    # biases are stored in fp16 (the format), so the reference uses the stored scales/biases with exact codes
    gs = 64
    w64 = (module.scales.double().repeat_interleave(gs, 1) * qt.codes.double()
           + module.biases.double().repeat_interleave(gs, 1))
    assert torch.allclose(module.dequantize_weight().double(), w64, atol=1e-6)
    assert _rel_err(module(torch.ones(2, 128)), torch.ones(2, 128).double() @ w64.t()) < 1e-5
    assert (w64 - reference_weight(qt)).abs().max() < 1e-3


@pytest.mark.parametrize("bits", [4, 8])
def test_mxfp_layouts(bits):
    qt = random_mx_qt(32, 96, bits)
    module = TORCH_MODULES[f"mxfp{bits}"].from_quantized(qt, torch.randn(32))
    _check(module, qt, module.bias)


def test_mxint4_shares_the_mxfp4_layout():
    """auto_round MXINT4 checkpoints store sign-magnitude k/4 nibbles where MXFP4 stores E2M1 ones."""
    qt = quantize(torch.randn(32, 96) * 0.05, QuantScheme(bits=4, group_size=32, data_type="mx_int"))
    module = TORCH_MODULES["mxfp4"].from_quantized(qt)
    assert torch.equal(module.dequantize_weight(), qt.dequantize())


def test_nvfp4_layout():
    qt = random_nvfp4_qt(32, 80)
    _check(TORCH_MODULES["nvfp4"].from_quantized(qt), qt)


@pytest.mark.parametrize("group_size", [0, -1, 32, (16, 32)])
def test_fp8_layouts(group_size):
    qt = random_fp8_qt(40, 96, group_size)
    _check(TORCH_MODULES["fp8"].from_quantized(qt), qt)


@pytest.mark.parametrize("packing", sorted(TORCH_MODULES))
def test_from_tensors_round_trip(packing):
    qt = {"mxfp4": random_mx_qt(32, 64, 4), "mxfp8": random_mx_qt(32, 64, 8), "nvfp4": random_nvfp4_qt(32, 64),
          "fp8": random_fp8_qt(32, 64, -1)}.get(packing) or random_int_qt(32, 64, 4, 32, packing != "gptq")
    cls = TORCH_MODULES[packing]
    module = cls.from_quantized(qt, torch.randn(32), packing)
    rebuilt = cls.from_tensors(dict(module.state_dict()), 64, 32, qt.scheme, packing, layer="x")
    x = torch.randn(3, 64)
    assert torch.equal(module(x), rebuilt(x))


def test_from_tensors_names_layer_and_mismatch():
    qt = random_int_qt(32, 64, 8, 32)
    tensors = dict(GPTQLinear.from_quantized(qt, None, "gptq").state_dict())
    with pytest.raises(CheckpointError, match=r"layer 'model.q'.*qweight.*\[16, 32\].*\[8, 32\]"):
        GPTQLinear.from_tensors(tensors, 64, 32, qt.scheme.replace(bits=4), "gptq", layer="model.q")
    del tensors["scales"]
    with pytest.raises(CheckpointError, match="'scales' is missing"):
        GPTQLinear.from_tensors(tensors, 64, 32, qt.scheme, "gptq", layer="model.q")


def test_bad_scheme_for_layout():
    with pytest.raises(ArError, match="packing .awq.: holds int 4-bit"):
        TORCH_MODULES["awq"].from_quantized(random_int_qt(16, 64, 8, 32))


def test_cache_weight_reuses_dequantized_tensor():
    module = GPTQLinear.from_quantized(random_int_qt(16, 64, 4, 32), None, "gptq")
    module.cache_weight = True
    x = torch.randn(2, 64)
    module(x)
    first = module._cached
    module(x)
    assert module._cached is first and first is not None


CORE_CASES = [("gptq", {"bits": 3, "group_size": 32}), ("gptq_v2", {"bits": 2, "group_size": 32, "sym": False}),
              ("awq", {"bits": 4, "group_size": 32, "sym": False}), ("mlx", {"bits": 6, "group_size": 32}),
              ("mxfp4", {"bits": 4, "group_size": 32, "data_type": "mx_fp"}),
              ("mxfp4", {"bits": 4, "group_size": 32, "data_type": "mx_fp_rceil"}),
              ("mxfp8", {"bits": 8, "group_size": 32, "data_type": "mx_fp"}),
              ("nvfp4", {"bits": 4, "group_size": 16, "data_type": "nv_fp"}),
              ("fp8", {"bits": 8, "group_size": -1, "data_type": "fp"}),
              ("fp8", {"bits": 8, "group_size": (32, 32), "data_type": "fp"})]


@pytest.mark.parametrize("packing,fields", CORE_CASES)
def test_records_from_ar_core_quantizers(packing, fields):
    qt = quantize(torch.randn(64, 96) * 0.05, QuantScheme(**fields))
    module = TORCH_MODULES[packing].from_quantized(qt, None, packing)
    core = qt.dequantize().double()
    assert torch.allclose(reference_weight(qt), core, atol=1e-7)
    tol = 1e-3 * float(core.abs().max()) if packing == "mlx" else 1e-7  # MLX stores biases in fp16
    assert torch.allclose(module.dequantize_weight().double(), core, atol=tol)
