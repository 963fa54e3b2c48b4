"""One `Layout` per packing (ar_core.layouts), used by both sides: the format writers store its `to_tensors`, and
the loader, the QuantLinear modules and `convert` read through the very same registered object."""

from __future__ import annotations

import pytest
import torch

from ar_core.layouts import LAYOUTS, Layout, get_layout
from ar_core.presets import parse_scheme
from ar_core.quant import quantize

# (packing, scheme) for every layout and every bit width it holds
ROUND_TRIPS = (
    [("gptq", {"scheme": "W4A16", "bits": b, "group_size": 32}) for b in (2, 3, 4, 8)]
    + [("gptq_v2", {"scheme": "W4A16", "bits": b, "group_size": 32, "sym": False}) for b in (2, 3, 4, 8)]
    + [("awq", {"scheme": "W4A16", "group_size": 32, "sym": False})]
    + [("mlx", {"scheme": "W4A16", "bits": b, "group_size": 32, "sym": False}) for b in (2, 3, 4, 5, 6, 8)]
    + [("pack_quantized", {"scheme": "W4A16", "bits": b, "group_size": 32, "sym": s})
       for b in (2, 3, 4, 8) for s in (True, False)]
    + [("int_quantized", "INT8_W8A8"), ("mxfp4", "MXFP4"), ("mxfp4", "MXINT4"), ("mxfp8", "MXFP8"),
       ("nvfp4", "NVFP4"), ("fp8", "FPW8A16"), ("fp8", "FP8_BLOCK")]
)


def _record(scheme, shape=(64, 256), seed=0):
    torch.manual_seed(seed)
    return quantize(torch.randn(*shape) * 0.05, parse_scheme(scheme))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point and a.element_size() == 1:
        a, b = a.view(torch.uint8), b.view(torch.uint8)
    return torch.equal(a, b)


def test_each_packing_has_exactly_one_layout():
    from ar_kernels.backends import list_backends
    from ar_kernels.loading.plan import AUTO_ROUND_INT_PACKINGS
    from ar_kernels.qlinear import TORCH_MODULES

    assert all(isinstance(v, Layout) and v.name == k for k, v in LAYOUTS.items())
    assert len({id(v) for v in LAYOUTS.values()}) == len(LAYOUTS)
    known = set(TORCH_MODULES) | set(AUTO_ROUND_INT_PACKINGS.values()) | {"pack_quantized", "int_quantized"}
    known |= {p for b in list_backends() for p in b.packings}
    assert known == set(LAYOUTS)
    with pytest.raises(Exception, match="not yet registered"):
        from ar_core.layouts import register_layout
        from ar_core.layouts.ints import GPTQLayout

        register_layout(GPTQLayout("gptq", zero_offset=1))
    assert get_layout("gptq").zero_offset == 1


@pytest.mark.parametrize("packing,scheme", ROUND_TRIPS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(ROUND_TRIPS)])
def test_layout_round_trip(packing, scheme):
    """to_tensors -> from_tensors gives the record's codes (and zeros) back, and storing it again gives the same
    bytes; the QuantLinear built from the record holds exactly those tensors."""
    from ar_kernels.qlinear import TORCH_MODULES

    qt = _record(scheme)
    layout = get_layout(packing)
    stored = layout.to_tensors(qt)
    back = layout.from_tensors(stored, qt.scheme, qt.in_features, qt.out_features, layer="l")
    assert _same(back.codes.view(torch.uint8) if back.codes.element_size() == 1 else back.codes,
                 qt.codes.view(torch.uint8) if qt.codes.element_size() == 1 else qt.codes)
    if qt.zero is not None:
        assert torch.equal(back.zero.to(torch.int64).expand_as(qt.zero), qt.zero.to(torch.int64))
    again = layout.to_tensors(back)
    assert set(again) == set(stored) and all(_same(again[k], stored[k]) for k in stored)
    torch.testing.assert_close(back.dequantize(), qt.dequantize(), rtol=0, atol=2e-3 * qt.dequantize().abs().max())
    if packing in TORCH_MODULES:
        module = TORCH_MODULES[packing].from_quantized(qt, None, packing)
        assert module.layout is layout
        for name, t in stored.items():
            if name != "weight_shape":
                assert _same(getattr(module, name).contiguous(), t.contiguous()), name


# (format, scheme) -> the packing its writer stores and the loader reads
G32 = {"scheme": "W4A16", "group_size": 32}  # the tiny model's layers are 64 wide
WRITES = [("auto_round", G32, "gptq"), ("auto_round", {**G32, "sym": False}, "awq"),
          ("auto_round", {**G32, "bits": 3, "sym": False}, "gptq_v2"), ("auto_gptq", G32, "gptq"),
          ("auto_awq", {**G32, "sym": False}, "awq"), ("mlx", G32, "mlx"),
          ("llm_compressor", G32, "pack_quantized"), ("llm_compressor", "INT8_W8A8", "int_quantized"),
          ("llm_compressor", "MXFP4", "mxfp4"), ("auto_round", "MXFP8", "mxfp8"), ("auto_round", "NVFP4", "nvfp4"),
          ("llm_compressor", "FPW8A16", "fp8")]


@pytest.mark.parametrize("fmt,scheme,packing", WRITES, ids=[f"{f}-{p}" for f, _, p in WRITES])
def test_writer_and_loader_use_the_same_layout_object(fmt, scheme, packing, tmp_path, monkeypatch):
    import ar_export
    import ar_kernels
    from ar_kernels.testing import tiny_llama

    used: dict[str, list[Layout]] = {"write": [], "read": []}
    for layout in LAYOUTS.values():
        for method, side in (("to_tensors", "write"), ("read", "read")):
            def spy(*args, _inner=getattr(layout, method), _layout=layout, _side=side, **kwargs):
                used[_side].append(_layout)
                return _inner(*args, **kwargs)
            monkeypatch.setattr(layout, method, spy)
    model = tiny_llama()
    s = parse_scheme(scheme)
    records = {n: quantize(m.weight.detach(), s) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layers." in n}
    for qt in records.values():
        if s.quantizes_activations:  # a calibrated input maximum for static activation scales
            qt.extras["act_max"] = torch.tensor(4.0)
    ar_export.register_all()
    ar_export.get_writer(fmt).save(tmp_path / "out", model, records)
    used["read"].clear()  # only what loading reads
    ar_kernels.load(tmp_path / "out")
    written, read = {id(x) for x in used["write"]}, {id(x) for x in used["read"]}
    assert written == {id(LAYOUTS[packing])}
    assert read == written
