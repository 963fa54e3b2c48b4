"""`ar_kernels.explain` (per-layer plan without reading weights) and `backend_table` (autoround.md §10.2)."""

import json

import pytest

import ar_kernels
from ar_core.errors import CheckpointError
from ar_kernels.loading.checkpoint import CheckpointReader
from ar_kernels.testing import quantize_block_linears, save_quantized, tiny_llama


@pytest.fixture
def gptq_dir(tmp_path):
    model = tiny_llama(64, 128)
    layers = quantize_block_linears(model, skip=("v_proj",), bits_by_suffix={"down_proj": 8})
    save_quantized(tmp_path, model, layers, {"quantization_config": {
        "quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True,
        "dynamic": {"-:.*v_proj": {}, "+:.*down_proj": {"bits": 8}}}})
    return tmp_path


def by_layer(rows):
    return {r["layer"]: r for r in rows}


def test_explain_matches_load_without_reading_tensors(gptq_dir, monkeypatch):
    model = ar_kernels.load(gptq_dir)
    monkeypatch.setattr(CheckpointReader, "get", lambda self, name: pytest.fail(f"explain read tensor {name}"))
    rows = by_layer(ar_kernels.explain(gptq_dir))
    assert {n for n, r in rows.items() if r["quantized"]} == set(model.ar_backends)
    for name, (backend, _) in model.ar_backends.items():
        assert rows[name]["backend"] == backend
    down, q = rows["model.layers.0.mlp.down_proj"], rows["model.layers.1.self_attn.q_proj"]
    assert down["scheme"] == "int 8-bit g32 sym" and down["packing"] == "gptq"
    assert q["scheme"] == "int 4-bit g32 sym" and q["tensors"] == ["qweight", "qzeros", "scales"]
    assert q["rejected"]["mlx"] == "packing 'gptq' not in ['mlx']"
    v = rows["model.layers.0.self_attn.v_proj"]
    assert not v["quantized"] and v["backend"] is None and v["tensors"] == ["weight"]
    assert not rows["lm_head"]["quantized"]


def test_explain_config_dict_equals_directory(gptq_dir):
    cfg = json.loads((gptq_dir / "config.json").read_text())
    from_dir, from_dict = ar_kernels.explain(gptq_dir), ar_kernels.explain(cfg)
    strip = [{k: v for k, v in r.items() if k != "tensors"} for r in from_dir]
    assert strip == [{k: v for k, v in r.items() if k != "tensors"} for r in from_dict]


def test_explain_names_why_a_forced_backend_cannot_run(gptq_dir, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    row = by_layer(ar_kernels.explain(gptq_dir, backend="triton"))["model.layers.0.mlp.up_proj"]
    assert row["backend"] is None
    assert "no backend can run layer 'model.layers.0.mlp.up_proj'" in row["reason"]
    assert "TRITON_INTERPRET=1" in row["rejected"]["triton"]
    assert row["rejected"]["torch"] == "backend='triton' was asked for"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    row = by_layer(ar_kernels.explain(gptq_dir, backend="triton"))["model.layers.0.mlp.up_proj"]
    assert row["backend"] == ("triton" if ar_kernels.get_backend("triton").is_installed() else None)


def test_explain_without_quantization_config(tmp_path):
    tiny_llama(64, 128).config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="quantization_config"):
        ar_kernels.explain(tmp_path)


def test_backend_table_rows():
    rows = ar_kernels.backend_table()
    assert [r["name"] for r in rows] == [b.name for b in ar_kernels.list_backends()]
    torch_row = next(r for r in rows if r["name"] == "torch")
    assert torch_row["installed"] is True and "cpu" in torch_row["devices"] and 4 in torch_row["bits"]
    assert set(torch_row["packings"]) >= {"gptq", "gptq_v2", "awq", "mlx", "fp8"}
    triton = next(r for r in rows if r["name"] == "triton")
    assert triton["auto_devices"] == ["cuda"] and triton["group_sizes"] is None
    assert triton["install"] == "pip install 'ar-kernels[triton]'" and triton["dtypes"][0] == "float16"
    for r in rows:
        assert r["priority"] == ar_kernels.get_backend(r["name"]).priority
        assert isinstance(r["installed"], bool) and all(isinstance(d, str) for d in r["dtypes"])
