"""Backend registry: capabilities, priorities, explanations and errors."""

import dataclasses

import pytest

from ar_core import registry as core_registry
from ar_core.errors import PluginError
from ar_core.scheme import QuantScheme
from ar_kernels import get_backend, list_backends, select_backend
from ar_kernels.backends import BUILTIN, torch_backend
from ar_kernels.qlinear import PACKINGS, TORCH_MODULES

INT4 = QuantScheme(bits=4, group_size=128, sym=True)


@pytest.fixture
def extra_backend(monkeypatch):
    """Register a Backend in ar_core's registry for one test."""

    def add(backend):
        monkeypatch.setitem(core_registry.BACKENDS._items, backend.name, backend)
        return backend

    return add


def test_builtin_backends_are_in_the_core_registry():
    assert {b.name for b in BUILTIN} == {"torch", "cpu", "triton", "mlx"}
    assert core_registry.BACKENDS.get("torch") is torch_backend.BACKEND
    assert [b.name for b in list_backends()] == ["mlx", "triton", "cpu", "torch"]  # by priority


@pytest.mark.parametrize("packing", PACKINGS)
def test_torch_serves_every_packing_on_cpu(packing):
    scheme = {"mxfp4": QuantScheme(bits=4, group_size=32, data_type="mx_fp"),
              "mxfp8": QuantScheme(bits=8, group_size=32, data_type="mx_fp"),
              "nvfp4": QuantScheme(bits=4, group_size=16, data_type="nv_fp"),
              "fp8": QuantScheme(bits=8, group_size=-1, data_type="fp")}.get(packing, INT4)
    chosen, reason = select_backend(scheme, packing, "cpu", 256, 128, backend="torch")
    assert chosen.name == "torch"
    assert reason.startswith("torch (priority 0) runs") and repr(packing) in reason
    assert chosen.module_class(packing) is TORCH_MODULES[packing]


def test_higher_priority_wins_and_reason_lists_others(extra_backend):
    extra_backend(dataclasses.replace(torch_backend.BACKEND, name="fastcpu", priority=7, packings=("gptq",)))
    chosen, reason = select_backend(INT4, "gptq", "cpu", 256, 128)
    assert chosen.name == "fastcpu" and "also capable: cpu, torch" in reason
    assert select_backend(INT4, "awq", "cpu", 256, 128)[0].name == "cpu"
    assert select_backend(INT4, "gptq", "cpu", 256, 128, backend="torch")[0].name == "torch"


def test_error_names_layer_scheme_and_installable_backends(extra_backend):
    extra_backend(dataclasses.replace(torch_backend.BACKEND, name="npu", devices=("npu",), requires=("no_such_mod",),
                                      install="pip install ar-npu"))
    with pytest.raises(PluginError) as err:
        select_backend(INT4, "gptq", "npu", 256, 128, layer="model.layers.3.mlp.up_proj")
    msg = str(err.value)
    assert "model.layers.3.mlp.up_proj" in msg and "int 4-bit group_size=128 sym=True" in msg
    assert "torch: device 'npu' not in" in msg and "could run it if installed: npu (`pip install ar-npu`)" in msg


def test_capability_fields_reject_with_reasons():
    triton = get_backend("triton")
    assert "bits 3" in triton.unsupported(INT4.replace(bits=3), "gptq", "cuda", 256, 128)
    assert "packing 'awq'" in triton.unsupported(INT4, "awq", "cuda", 256, 128)
    assert "multiple of 32" in triton.unsupported(INT4.replace(group_size=32), "gptq", "cuda", 48, 128)
    mlx = get_backend("mlx")
    assert "group_size 16" in mlx.unsupported(INT4.replace(group_size=16), "mlx", "cpu", 256, 128)
    assert "dtype" in get_backend("torch").unsupported(INT4, "gptq", "cpu", 256, 128, dtype=__import__("torch").int8)


def test_unknown_backend_name():
    with pytest.raises(PluginError, match="unknown backend 'cutlass'.*torch"):
        select_backend(INT4, "gptq", "cpu", 256, 128, backend="cutlass")
