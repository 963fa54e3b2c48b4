"""Static activation calibration: every FP8_STATIC / NVFP4 record carries the abs-max of its layer's input, for every
recipe (RTN included) and across a resume; dynamic and weight-only schemes carry none."""

import copy

import pytest
import torch

from ar_algos import AutoRound
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError

SAMPLES = random_samples(4, 8)
RECIPES = [dict(recipe="rtn", iters=None), dict(recipe="opt-rtn", iters=None), dict(iters=2)]


def _ar(scheme, work_dir=None, model=None, **kw):
    args = dict(scheme=scheme, dataset=SAMPLES, nsamples=4, seqlen=8, batch_size=2, verbose=False,
                work_dir=work_dir)
    return AutoRound(model or tiny_model("llama", num_hidden_layers=3), **{**args, **kw})


def _first_input_absmax(model, name):
    """max |input| of layer `name` of the unquantized model over the calibration samples."""
    seen = []
    handle = model.get_submodule(name).register_forward_pre_hook(lambda _m, a: seen.append(a[0].abs().max()))
    with torch.no_grad():
        for s in SAMPLES:
            model(torch.as_tensor(s["input_ids"]).reshape(1, -1))
    handle.remove()
    return torch.stack(seen).max().float()


@pytest.mark.parametrize("scheme", ["NVFP4", "FP8_STATIC"])
@pytest.mark.parametrize("knobs", RECIPES, ids=["rtn", "opt-rtn", "signround"])
def test_static_schemes_record_the_input_absmax(scheme, knobs):
    model = tiny_model("llama", num_hidden_layers=3)
    expected = _first_input_absmax(copy.deepcopy(model), "model.layers.0.self_attn.q_proj")
    _, records = _ar(scheme, model=model, **knobs).quantize()
    assert records and all(qt.extras["act_max"].shape == () and qt.extras["act_max"] > 0 for qt in records.values())
    torch.testing.assert_close(records["model.layers.0.self_attn.q_proj"].extras["act_max"], expected)
    # q/k/v read the same input, so they share one maximum (fused kernels need one input scale)
    same = {float(records[f"model.layers.1.self_attn.{p}_proj"].extras["act_max"]) for p in "qkv"}
    assert len(same) == 1


@pytest.mark.parametrize("scheme", ["MXFP4", "W4A16", "INT8_W8A8"])
def test_dynamic_and_weight_only_schemes_carry_no_act_max(scheme):
    _, records = _ar(scheme, recipe="rtn", iters=None).quantize()
    assert not any("act_max" in qt.extras for qt in records.values())


def test_resumed_run_keeps_the_calibrated_maxima(tmp_path, die_at_block):
    _, full = _ar("FP8_STATIC", recipe="rtn", iters=None).quantize()
    die_at_block(2)
    with pytest.raises(RuntimeError, match="killed at block 2"):
        _ar("FP8_STATIC", tmp_path / "w", recipe="rtn", iters=None).quantize()
    _, resumed = _ar("FP8_STATIC", tmp_path / "w", recipe="rtn", iters=None).quantize()
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name].extras["act_max"], resumed[name].extras["act_max"]), name


def test_static_scheme_without_calibration_text_is_refused_up_front():
    with pytest.raises(ArError, match="static activation scales"):
        AutoRound(tiny_model("llama"), scheme="NVFP4", recipe="rtn", verbose=False)
