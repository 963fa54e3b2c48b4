"""The AutoRound API end to end on tiny models: validation up front, formats, records, progress lines."""

import io
import re

import pytest
import torch

from ar_algos import AutoRound
from ar_algos.blocks import get_module, weight_of
from ar_algos.progress import Progress
from ar_algos.tiny import FAMILIES, random_samples, tiny_model
from ar_core.errors import ArError, PluginError
from ar_core.registry import ALGORITHMS, FORMATS


def _ar(family="llama", **kw):
    args = dict(scheme="W4G32", dataset=random_samples(4, 8), nsamples=4, seqlen=8, batch_size=2, iters=2,
                verbose=False)
    return AutoRound(tiny_model(family), **{**args, **kw})


@pytest.mark.parametrize("family", FAMILIES)
def test_quantize_every_family_writes_records_into_the_model(family):
    ar = _ar(family)
    model, records = ar.quantize()
    expected = {n for n, e in ar.plan.entries.items() if e.scheme.is_quantized}
    assert set(records) == expected and len(records) >= 8
    for name, qt in records.items():
        assert torch.equal(weight_of(get_module(model, name)).detach().float(), qt.dequantize())


@pytest.mark.parametrize("recipe", ["rtn", "opt-rtn"])
def test_rtn_recipes_and_lm_head(recipe):
    ar = _ar(recipe=recipe, quant_lm_head=True, iters=None)
    _, records = ar.quantize()
    assert "lm_head" in records and records["lm_head"].shape == (128, 64)


def test_signround_tunes_an_untied_lm_head():
    ar = _ar(quant_lm_head=True)
    w0 = ar.model.lm_head.weight.detach().clone()
    _, records = ar.quantize()
    assert torch.equal(ar.model.lm_head.weight.detach(), records["lm_head"].dequantize())
    assert not torch.equal(w0, ar.model.lm_head.weight.detach())


@pytest.mark.parametrize("kw, field", [
    (dict(iters=-1), "iters"), (dict(lr=2.0), "lr"), (dict(batch_size=0), "batch_size"),
    (dict(nsamples="8"), "nsamples"), (dict(recipe="fast"), "recipe"), (dict(iter=5), "option"),
    (dict(device="tpu"), "device"), (dict(scheme="W9A16"), "scheme"), (dict(bits=7), "bits"),
    (dict(dynamic_max_gap=0), "dynamic_max_gap"), (dict(enable_adam="yes"), "enable_adam"),
    (dict(quant_lm_head="yes"), "quant_lm_head"), (dict(resume=None), "resume"),
    (dict(layer_config={"no_such_layer": {"bits": 8}}), "no_such_layer"),
])
def test_bad_knobs_raise_arerror_naming_the_field(kw, field):
    with pytest.raises(ArError, match=field):
        _ar(**kw)


def test_a_missing_model_path_is_an_arerror(tmp_path):
    with pytest.raises(ArError, match="missing"):
        AutoRound(str(tmp_path / "missing"), recipe="rtn")


def test_data_driven_algorithms_need_data_or_a_tokenizer():
    with pytest.raises(ArError, match="tokenizer"):
        AutoRound(tiny_model("llama"), iters=2)
    AutoRound(tiny_model("llama"), recipe="rtn")  # RTN needs no data


class _Format:
    """A stand-in exporter that refuses 2-bit layers and remembers what it was asked to save."""

    name = "algos_test_fmt"

    def __init__(self):
        self.saved = None

    def supports(self, scheme):
        return scheme.bits != 2

    def check(self, schemes):
        bad = [n for n, s in schemes.items() if not self.supports(s)]
        if bad:
            raise ArError(f"format {self.name!r} cannot hold 2-bit layers such as {bad[0]}")

    def save(self, output_dir, model, quantized, **kw):
        self.saved = (output_dir, dict(quantized), kw)
        return output_dir


@pytest.fixture
def fmt():
    f = _Format()
    FORMATS.register(f.name, f)
    yield f
    FORMATS.unregister(f.name)


def test_quantize_and_save_hands_records_to_the_format_and_cleans_up(fmt, tmp_path):
    ar = _ar()
    out = tmp_path / "out"
    _, paths = ar.quantize_and_save(out, format=fmt.name)
    assert paths == [out]
    saved_dir, quantized, kw = fmt.saved
    assert saved_dir == out and quantized.keys() == ar.records.keys()
    assert kw["run_info"]["iters"] == 2 and kw["run_info"]["nsamples"] == 4 and "plan" not in kw["run_info"]
    assert not (tmp_path / "out.work").exists()


def test_formats_are_checked_before_quantization(fmt, tmp_path):
    ar = _ar(scheme="W2G32")
    w0 = ar.model.model.layers[0].mlp.down_proj.weight.detach().clone()
    with pytest.raises(ArError, match="cannot hold 2-bit"):
        ar.quantize_and_save(tmp_path / "o", format=fmt.name)
    with pytest.raises(PluginError, match="no_such_format"):
        ar.quantize_and_save(tmp_path / "o", format=f"{fmt.name},no_such_format")
    assert ar.records is None and torch.equal(w0, ar.model.model.layers[0].mlp.down_proj.weight)
    with pytest.raises(ArError, match="quantize"):
        ar.save_quantized(tmp_path / "o", format=fmt.name)


def test_algorithms_are_registered():
    for name in ("rtn", "opt-rtn", "signround"):
        ar = ALGORITHMS.get(name)(tiny_model("llama"), dataset=random_samples(2, 8), seqlen=8, verbose=False)
        assert ar.cfg.algorithm == name


def test_progress_lines_are_plain_text_off_a_tty():
    stream = io.StringIO()
    p = Progress(30, stream=stream)
    p.block(2, 2.0, 1.2e-3, 4.1e-4)
    line = stream.getvalue().strip()
    assert re.fullmatch(r"block 3/30  loss 0\.0012 -> 0\.00041  2\.0s  ETA 54\.0s  RAM \d+\.\d GB( .*)?", line), line
    p.block(3, 4.0)
    assert "ETA 1m18s" in stream.getvalue().splitlines()[1]  # mean 3 s/block x 26 blocks left


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("low_gpu_mem_usage", [False, True])
def test_cuda_blocks_match_cpu_and_return_to_cpu(low_gpu_mem_usage):
    _, cpu = _ar(amp=False).quantize()
    ar = _ar(device="cuda", amp=False, low_gpu_mem_usage=low_gpu_mem_usage)
    model, gpu = ar.quantize()
    assert all(p.device.type == "cpu" for p in model.parameters())
    for name in cpu:
        agree = (cpu[name].codes == gpu[name].codes).float().mean().item()
        assert agree > 0.95, (name, agree)


def test_low_gpu_mem_usage_gives_the_same_records_on_cpu():
    _, a = _ar().quantize()
    _, b = _ar(low_gpu_mem_usage=True).quantize()
    assert all(torch.equal(a[n].codes, b[n].codes) and torch.equal(a[n].scale, b[n].scale) for n in a)


@pytest.mark.parametrize("quanted", [True, False])
def test_enable_quanted_input_picks_the_chain_block_1_is_trained_on(quanted, monkeypatch):
    import ar_algos.driver as driver

    seen = []
    real = driver.signround_block

    def spy(block, layers, schemes, inputs, target, *args, **kw):
        seen.append((inputs.clone(), target(torch.arange(inputs.shape[0])).clone()))
        return real(block, layers, schemes, inputs, target, *args, **kw)

    monkeypatch.setattr(driver, "signround_block", spy)
    _ar(scheme="W2G32", enable_quanted_input=quanted).quantize()
    (in0, fp_out0), (in1, _) = seen[0], seen[1]
    assert torch.equal(in1, fp_out0) != quanted  # fp chain: block 1 sees block 0's 16-bit output


def test_deterministic_mode_is_scoped_to_the_run():
    before = torch.are_deterministic_algorithms_enabled()
    _, a = _ar(deterministic=True).quantize()
    _, b = _ar().quantize()
    assert torch.are_deterministic_algorithms_enabled() == before
    assert all(torch.equal(a[n].codes, b[n].codes) for n in a)


@pytest.mark.parametrize("scheme", ["MXFP4", "NVFP4", "FP8_BLOCK", "GGUF:Q4_K_M", "GGUF:Q2_K_S", "W8A16"])
@pytest.mark.parametrize("iters", [0, 2])
def test_every_data_type_gives_records_matching_the_model(scheme, iters):
    ar = AutoRound(tiny_model("llama", hidden_size=256, intermediate_size=512), scheme=scheme,
                   dataset=random_samples(4, 8), nsamples=4, seqlen=8, batch_size=2, iters=iters, verbose=False)
    model, records = ar.quantize()
    assert len(records) >= 14
    for name, qt in records.items():
        assert qt.scheme.data_type == ar.plan.entries[name].scheme.data_type
        assert torch.equal(weight_of(get_module(model, name)).detach().float(), qt.dequantize())
