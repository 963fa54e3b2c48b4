"""The cpu backend (CPUIntLinear) against a float64 dequantize + matmul, for every packing and bit width it claims."""

import pytest
import torch

from ar_core.scheme import QuantScheme
from ar_kernels.backends import select_backend
from ar_kernels.qlinear import AWQLinear, GPTQLinear, int4pack
from ar_kernels.qlinear.cpu import CPUIntLinear
from ar_kernels.testing import random_int_qt, reference_weight

TOL = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 2e-2}  # as the triton kernels' tests
CASES = [(p, b, s) for p in ("gptq", "gptq_v2") for b in (2, 3, 4, 8) for s in (True, False)]
CASES += [("awq", 4, True), ("awq", 4, False)]


def checkpoint_module(qt, packing, bias=None):
    """CPUIntLinear built as `load` builds it: from the checkpoint tensors of the torch-reference layout."""
    ref = (AWQLinear if packing == "awq" else GPTQLinear).from_quantized(qt, bias, packing)
    tensors = {k: v for k, v in ref.state_dict().items()}
    return CPUIntLinear.from_tensors(tensors, qt.shape[1], qt.shape[0], qt.scheme, packing)


def assert_matches(module, w64, bias, m, dtype, lead=()):
    x = torch.randn(*lead, m, module.in_features, generator=torch.Generator().manual_seed(m))
    ref = x.double() @ w64.t() + (0 if bias is None else bias.double())
    y = module(x.to(dtype))
    assert y.dtype == dtype and y.shape == (*lead, m, module.out_features)
    err = float((y.double() - ref).norm() / ref.norm())
    assert err < TOL[dtype], err


@pytest.mark.parametrize("packing,bits,sym", CASES)
@pytest.mark.parametrize("m", [1, 16])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_checkpoint_layouts_match_float64(packing, bits, sym, m, dtype):
    qt = random_int_qt(80, 256, bits, 64, sym, seed=bits)
    bias = torch.randn(80)
    module = checkpoint_module(qt, packing, bias)
    assert module.uses_kernel == (bits == 4)
    assert torch.allclose(module.dequantize_weight().double(), reference_weight(qt), atol=1e-6)
    assert_matches(module, reference_weight(qt), bias, m, dtype)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("sym", [True, False])
def test_quantized_records_as_compressed_tensors_are_served(bits, sym):
    """load() reads compressed-tensors pack-quantized layers into records and builds the layer from them."""
    qt = random_int_qt(48, 128, bits, 32, sym, seed=3)
    module = CPUIntLinear.from_quantized(qt, None, "gptq_v2")
    for m, dtype in ((1, torch.bfloat16), (16, torch.float32), (3, torch.float16)):
        assert_matches(module, reference_weight(qt), None, m, dtype, lead=(2,))


@pytest.mark.parametrize("group_size", [32, 64, 128, 256, -1])
def test_int4_kernel_group_sizes(group_size):
    qt = random_int_qt(64, 256, 4, group_size, False, seed=5)
    module = CPUIntLinear.from_quantized(qt)
    assert module.uses_kernel and module.path.startswith("int4 kernel")
    for m in (1, 16):
        assert_matches(module, reference_weight(qt), None, m, torch.bfloat16)


@pytest.mark.parametrize("out_features,in_features,group_size,why", [
    (64, 256, 16, "group_size=16"), (40, 128, 32, "out_features=40 is not a multiple of 16"),
    (64, 96, 64, "in_features=96 is not a multiple of group_size=64")])
def test_layers_the_kernel_cannot_take_fall_back_to_unpack_with_a_reason(out_features, in_features, group_size,
                                                                         why):
    qt = random_int_qt(out_features, in_features, 4, group_size, False, seed=7)
    module = CPUIntLinear.from_quantized(qt)
    assert not module.uses_kernel and module.path.startswith("vectorised unpack") and why in module.path
    for dtype in (torch.bfloat16, torch.float32):
        assert_matches(module, reference_weight(qt), None, 5, dtype)


def test_act_order_g_idx_becomes_an_input_permutation():
    qt = random_int_qt(64, 128, 4, 32, False, seed=9)
    ref = GPTQLinear.from_quantized(qt, None, "gptq_v2", g_idx=True)
    ref.g_idx = ref.g_idx[torch.randperm(128, generator=torch.Generator().manual_seed(0))]
    module = CPUIntLinear.from_reference(ref)
    assert module.perm is not None and module.uses_kernel
    w64 = ref.dequantize_weight().double()
    assert torch.allclose(module.dequantize_weight().double(), w64, atol=1e-6)
    for dtype in (torch.bfloat16, torch.float32):
        assert_matches(module, w64, None, 4, dtype)
    module.cache_weight = True
    assert_matches(module, w64, None, 4, torch.float32)


def test_irregular_g_idx_stays_on_the_reference_module():
    qt = random_int_qt(32, 64, 4, 32, True, seed=1)
    ref = GPTQLinear.from_quantized(qt, None, "gptq", g_idx=True)
    ref.g_idx = torch.zeros(64, dtype=torch.int32)  # every row in group 0: not 32 rows per group
    assert CPUIntLinear.from_reference(ref) is ref


def test_cache_weight_keeps_one_dense_weight_per_dtype():
    qt = random_int_qt(64, 128, 4, 32, True, seed=2)
    module = CPUIntLinear.from_quantized(qt)
    x = torch.randn(3, 128)
    first = module(x)
    module.cache_weight = True
    cached = module(x)
    assert list(module._dense) == [torch.float32] and torch.allclose(first, cached, atol=1e-5)
    assert_matches(module, reference_weight(qt), None, 2, torch.bfloat16)
    assert set(module._dense) == {torch.float32, torch.bfloat16}


@pytest.mark.parametrize("n", [16, 48, 64, 80, 208])
def test_int4_layout_reads_back(n):
    q = torch.randint(0, 16, (n, 64), dtype=torch.int32, generator=torch.Generator().manual_seed(n))
    assert int4pack.layout_known(n) and torch.equal(int4pack.unpack(int4pack.repack(q), n, 64), q)


def test_selection_picks_cpu_and_says_which_path():
    w4 = QuantScheme(bits=4, group_size=128, sym=False)
    chosen, reason = select_backend(w4, "gptq", "cpu", 4096, 4096)
    assert chosen.name == "cpu" and "[int4 kernel" in reason and "also capable: torch" in reason
    chosen, reason = select_backend(w4.replace(bits=3), "gptq", "cpu", 4096, 4096)
    assert chosen.name == "cpu" and "vectorised unpack + matmul: bits=3" in reason
    mx = QuantScheme(bits=4, group_size=32, data_type="mx_fp")
    chosen, reason = select_backend(mx, "mxfp4", "cpu", 256, 128)
    assert chosen.name == "torch" and "cpu: packing 'mxfp4' not in" in reason
    assert select_backend(w4, "gptq", "cuda", 4096, 4096, backend="torch")[0].name == "torch"
