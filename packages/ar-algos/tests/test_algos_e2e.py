"""The end-to-end stage (`e2e_steps`): codes kept, calibration KL lowered, resumable, exported as tuned."""

import pytest
import torch

from ar_algos import AutoRound, e2e
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError


def _ar(work_dir=None, **kw):
    args = dict(scheme="W2G32", dataset=random_samples(6, 16), nsamples=6, seqlen=16, batch_size=3, iters=2,
                verbose=False, work_dir=work_dir, e2e_steps=8, e2e_lr=0.005)
    return AutoRound(tiny_model("llama", num_hidden_layers=3), **{**args, **kw})


@pytest.mark.parametrize("sym", [True, False])
def test_codes_stay_and_calibration_kl_drops(sym):
    _, plain = _ar(e2e_steps=0, sym=sym).quantize()
    ar = _ar(sym=sym)
    model, tuned = ar.quantize()
    assert plain.keys() == tuned.keys()
    for name, qt in tuned.items():
        assert torch.equal(qt.codes, plain[name].codes), name
        assert qt.scale.dtype == plain[name].scale.dtype and qt.zero.dtype == plain[name].zero.dtype
        assert torch.equal(model.get_submodule(name).weight.detach(), qt.dequantize())
        if not sym:
            assert 0 <= int(qt.zero.min()) and int(qt.zero.max()) <= 3
    assert any(not torch.equal(qt.scale, plain[n].scale) for n, qt in tuned.items())
    report = ar.e2e_report
    assert report["kept"] and report["kl_after"] < 0.9 * report["kl_before"], report
    assert report["layers"] == len(tuned)


def test_scales_stay_on_the_fp16_grid():
    _, tuned = _ar().quantize()
    for qt in tuned.values():
        assert torch.equal(qt.scale, qt.scale.half().float())


def test_schemes_without_int_scales_are_left_as_they_are():
    _, plain = _ar(scheme="MXFP4", e2e_steps=0).quantize()
    ar = _ar(scheme="MXFP4")
    _, tuned = ar.quantize()
    assert ar.e2e_report["layers"] == 0
    for name, qt in tuned.items():
        assert torch.equal(qt.scale, plain[name].scale) and torch.equal(qt.codes, plain[name].codes)


def test_teacher_kl_is_exact_with_the_whole_vocabulary_and_a_lower_bound_with_topk():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(5, 40, generator=g), torch.randn(5, 40, generator=g)
    logp = torch.log_softmax(t, -1)
    exact = (logp.exp() * (logp - torch.log_softmax(s, -1))).sum(-1)
    full = e2e.token_kl(s, *[x for x in logp.topk(40, -1)])
    assert torch.allclose(full, exact, atol=1e-5)
    top = e2e.token_kl(s, *[x for x in logp.topk(8, -1)])
    assert (top <= exact + 1e-6).all() and (top >= 0).all()


def test_a_killed_run_resumes_to_the_same_tensors(tmp_path, monkeypatch, assert_same_records):
    _, full = _ar(tmp_path / "a").quantize()
    real, calls = e2e.train_step, []

    def dying(*args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed at e2e step 5")
        return real(*args)

    monkeypatch.setattr(e2e, "train_step", dying)
    with pytest.raises(RuntimeError, match="killed at e2e step 5"):
        _ar(tmp_path / "b").quantize()
    assert (tmp_path / "b" / "e2e.pt").is_file() and (tmp_path / "b" / "teacher.pt").is_file()
    _, resumed = _ar(tmp_path / "b").quantize()
    assert len(calls) == 9  # 4 finished steps, the killed 5th, then steps 5..8 once each
    assert_same_records(full, resumed)


def test_export_and_reload_gives_the_tuned_model(tmp_path):
    ar_export = pytest.importorskip("ar_export")
    ar_kernels = pytest.importorskip("ar_kernels")
    from ar_core.registry import FORMATS

    if not FORMATS.is_available("auto_round"):
        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))
    ar = _ar()
    model, [path] = ar.quantize_and_save(tmp_path / "out", format="auto_round")
    loaded = ar_kernels.load(path, device="cpu")
    ids = torch.randint(0, 128, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits.float(), model(ids).logits.float(), atol=1e-4)


@pytest.mark.parametrize("kw, field", [
    (dict(e2e_steps=-1), "e2e_steps"), (dict(e2e_lr=0.5), "e2e_lr"), (dict(e2e_topk=0), "e2e_topk"),
    (dict(iters=0, disable_opt_rtn=True), "e2e_steps"),
])
def test_bad_e2e_knobs_raise_arerror_before_any_work(kw, field):
    with pytest.raises(ArError, match=field):
        _ar(**kw)
