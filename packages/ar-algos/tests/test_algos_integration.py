"""AutoRound integration: flat run_info, AutoScheme as a scheme, model-free routing, block_names, samples=,
processor forwarding."""

import json

import pytest
import torch

from ar_algos import AutoRound, AutoScheme
from ar_algos.config import make_config
from ar_algos.run_info import run_info
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError
from ar_core.registry import ALGORITHMS, FORMATS


def _writer(name="auto_round"):
    """The real ar-export writer (registered under its name for FORMATS lookups)."""
    ar_export = pytest.importorskip("ar_export")
    if not FORMATS.is_available(name):
        FORMATS.register(name, ar_export.get_writer(name))
    return FORMATS.get(name)


def _ar(**kw):
    args = dict(scheme="W4G32", dataset=random_samples(4, 8), nsamples=4, seqlen=8, batch_size=2, iters=2,
                verbose=False)
    return AutoRound(tiny_model("llama"), **{**args, **kw})


@pytest.mark.parametrize("knobs, expected", [
    ({}, {}),
    (dict(iters=2, nsamples=4, seqlen=8, batch_size=2), dict(iters=2, nsamples=4, seqlen=8, batch_size=2)),
    (dict(iters=50, lr=0.02), dict(iters=50)),  # lr == 1/iters is the default
    (dict(lr=0.1, enable_minmax_tuning=False), dict(lr=0.1, minmax_lr=0.1, enable_minmax_tuning=False)),
    (dict(iters=0, nsamples=4, batch_size=2, low_gpu_mem_usage=True), dict(iters=0, nsamples=4,
                                                                          low_gpu_mem_usage=True)),
    (dict(iters=0, disable_opt_rtn=True, nsamples=4, enable_quanted_input=False),
     dict(iters=0, disable_opt_rtn=True)),
])
def test_run_info_is_flat_and_drops_defaults(knobs, expected):
    info = run_info(make_config(**knobs))
    assert info.pop("ar_version")
    assert info == expected


def test_run_info_records_a_dataset_spec_but_not_in_memory_data():
    cfg = make_config()
    assert run_info(cfg, "wiki:num=8")["dataset"] == "wiki:num=8"
    assert "dataset" not in run_info(cfg, "NeelNanda/pile-10k") and "dataset" not in run_info(cfg, [[1, 2]])


def test_written_quantization_config_has_flat_knobs_and_no_plan(tmp_path):
    _writer()
    ar = _ar()
    ar.quantize_and_save(tmp_path / "out")
    qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    assert not {"plan", "knobs", "algorithm"} & set(qc)
    assert qc["iters"] == 2 and qc["nsamples"] == 4 and qc["batch_size"] == 2 and "lr" not in qc
    assert qc["ar_version"] and qc["quant_method"] == "auto-round" and qc["bits"] == 4


def _search(**kw):
    return AutoScheme(avg_bits=5.0, options="W2A16G32,W8A16G32", nsamples=4, seqlen=8, batch_size=2, verbose=False,
                      **kw)


def test_an_autoscheme_scheme_searches_then_quantizes_with_its_layer_config():
    ar = _ar(scheme=_search(), iters=0)
    report = ar.autoscheme_report
    assert report is not None and report.avg_bits <= 5.0
    _, records = ar.quantize()
    bits = {n: qt.scheme.bits for n, qt in records.items()}
    assert set(bits.values()) == {2, 8}
    for name, qt in records.items():
        assert qt.scheme == report.plan.entries[name].scheme


def test_autoscheme_keeps_user_layers_and_is_registered():
    fixed = "model.layers.0.mlp.down_proj"
    ar = ALGORITHMS.get("autoscheme")(tiny_model("llama"), avg_bits=5.0, options="W2A16G32,W8A16G32",
                                      dataset=random_samples(16, 256), nsamples=4, seqlen=8, iters=0, verbose=False,
                                      layer_config={fixed: "W4A16G32"})
    assert ar.plan.entries[fixed].scheme.bits == 4
    assert {e.scheme.bits for e in ar.plan.entries.values() if e.scheme.is_quantized} >= {2, 8}


def test_autoscheme_needs_calibration_data():
    with pytest.raises(ArError, match="tokenizer"):
        AutoRound(tiny_model("llama"), scheme=_search(), iters=0, disable_opt_rtn=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Llama saved with a tokenizer, loadable by path."""
    testing = pytest.importorskip("ar_export.testing")
    path = tmp_path_factory.mktemp("mfroute") / "src"
    tiny_model("llama", dtype=torch.bfloat16).save_pretrained(path)
    testing.tiny_tokenizer().save_pretrained(path)
    return path


def _weights_and_qc(path):
    from safetensors.torch import load_file

    qc = json.loads((path / "config.json").read_text())["quantization_config"]
    return load_file(path / "model.safetensors"), qc


def test_plain_rtn_of_a_model_directory_runs_model_free_with_the_same_output(model_dir, tmp_path, monkeypatch):
    _writer()
    import ar_algos.model_free as model_free

    calls = []
    real = model_free.quantize_model_free
    monkeypatch.setattr(model_free, "quantize_model_free", lambda *a, **k: calls.append(a) or real(*a, **k))
    ar = AutoRound(str(model_dir), scheme="W4A16G32", iters=0, disable_opt_rtn=True, verbose=False)
    model, paths = ar.quantize_and_save(tmp_path / "free")
    assert model is None and ar.model is None and paths == [tmp_path / "free"] and len(calls) == 1
    reg = AutoRound(str(model_dir), scheme="W4A16G32", iters=0, disable_opt_rtn=True, verbose=False,
                    disable_model_free=True)
    model, _ = reg.quantize_and_save(tmp_path / "reg")
    assert model is not None and len(calls) == 1
    (w_free, qc_free), (w_reg, qc_reg) = _weights_and_qc(tmp_path / "free"), _weights_and_qc(tmp_path / "reg")
    assert qc_free == qc_reg and qc_free["disable_opt_rtn"] is True and "plan" not in qc_free
    assert w_free.keys() == w_reg.keys() and all(torch.equal(w_free[k], w_reg[k]) for k in w_free)


@pytest.mark.parametrize("kw", [dict(scheme="W3A16"), dict(disable_opt_rtn=False),
                                dict(layer_config={"mlp.down_proj": "W3A16"})])
def test_runs_model_free_cannot_do_take_the_regular_path(model_dir, tmp_path, kw):
    _writer()
    args = dict(scheme="W4A16G32", iters=0, disable_opt_rtn=True, verbose=False, dataset=random_samples(2, 8),
                nsamples=2, seqlen=8)
    model, paths = AutoRound(str(model_dir), **{**args, **kw}).quantize_and_save(tmp_path / "out")
    assert model is not None and (paths[0] / "config.json").is_file()


def test_quantize_of_a_deferred_model_directory_loads_it(model_dir):
    ar = AutoRound(str(model_dir), scheme="W4A16G32", iters=0, disable_opt_rtn=True, verbose=False)
    assert ar.model is None and ar.model_free_dir == model_dir
    model, records = ar.quantize()
    assert model is ar.model and "model.layers.1.mlp.up_proj" in records


def test_block_names_pick_the_chain_and_alias():
    assert _ar(block_names="model.layers").block_names == _ar().block_names
    ar = _ar(to_quant_block_names=["model.layers.1"])
    assert ar.block_names == ["model.layers.1"]
    w0 = ar.model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    _, records = ar.quantize()
    assert records and all(n.startswith("model.layers.1.") for n in records)
    assert torch.equal(w0, ar.model.model.layers[0].self_attn.q_proj.weight)


@pytest.mark.parametrize("kw, field", [
    (dict(block_names="model.nothing"), "model.nothing"),
    (dict(block_names=[]), "block_names"),
    (dict(block_names="model.layers", to_quant_block_names="model.layers"), "to_quant_block_names"),
    (dict(block_names=[["model.layers.0"], ["model.layers.1"]]), "block_names"),
    (dict(samples=[{"ids": torch.zeros(1, 8)}]), "samples"),
    (dict(samples=random_samples(1, 8) + random_samples(1, 6)), "samples"),
])
def test_bad_block_names_and_samples_raise_arerror(kw, field):
    with pytest.raises(ArError, match=field):
        _ar(**kw)


def test_samples_are_used_as_is_with_every_key_passed_to_the_model():
    samples = [{**s, "marker": torch.full((1,), i)} for i, s in enumerate(random_samples(4, 8, seed=3))]
    model = tiny_model("llama")
    seen = []

    def take_marker(_module, args, kwargs):
        if "marker" in kwargs:
            seen.append(int(kwargs.pop("marker")))
        return args, kwargs

    model.register_forward_pre_hook(take_marker, with_kwargs=True)
    ar = AutoRound(model, scheme="W4G32", samples=samples, iters=2, batch_size=2, seqlen=8, verbose=False)
    _, records = ar.quantize()
    assert seen[:4] == [0, 1, 2, 3]
    plain = [{k: v for k, v in s.items() if k != "marker"} for s in samples]
    _, expected = _ar(dataset=plain).quantize()
    assert all(torch.equal(records[n].codes, expected[n].codes) for n in expected)


def test_save_quantized_hands_the_processor_to_the_format():
    class Format:
        name = "algos_integration_fmt"

        def check(self, schemes):
            pass

        def save(self, output_dir, model, quantized, **kw):
            self.kw = kw
            return output_dir

    fmt = Format()
    FORMATS.register(fmt.name, fmt)
    ar = _ar(recipe="rtn", iters=None)
    ar.quantize()
    processor = object()
    try:
        ar.save_quantized("unused", format=fmt.name, processor=processor)
    finally:
        FORMATS.unregister(fmt.name)
    assert fmt.kw["processor"] is processor and fmt.kw["run_info"]["disable_opt_rtn"] is True
