"""Block-granular resume: an interrupted run continues bitwise-identically; other runs are refused."""

import pytest
import torch

from ar_algos import AutoRound, signround
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import CheckpointError


def _ar(work_dir, **kw):
    args = dict(scheme="W3G32", dataset=random_samples(4, 8), nsamples=4, seqlen=8, batch_size=2, iters=3,
                verbose=False, work_dir=work_dir, quant_lm_head=True)
    return AutoRound(tiny_model("llama", num_hidden_layers=3), **{**args, **kw})


@pytest.mark.parametrize("amp", [False, True])
def test_interrupted_run_resumes_bitwise_identical(tmp_path, die_at_block, assert_same_records, monkeypatch, amp):
    monkeypatch.setattr(signround, "tunes_in_bf16", lambda device: amp)  # bf16 tuning steps on any CPU when amp
    monkeypatch.setattr(signround, "fast_bf16", lambda device: amp)
    calls = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **kw: calls.append(kw["dtype"]) or real_autocast(*a, **kw))
    _, full = _ar(tmp_path / "a").quantize()
    assert (torch.bfloat16 in calls) == amp
    seen = die_at_block(2)
    with pytest.raises(RuntimeError, match="killed at block 2"):
        _ar(tmp_path / "b").quantize()
    model, resumed = _ar(tmp_path / "b").quantize()
    assert seen == [0, 1, 2, 2]  # the second call started at the unfinished block
    assert_same_records(full, resumed)
    for name, qt in resumed.items():
        assert torch.equal(model.get_submodule(name).weight.detach(), qt.dequantize())


def test_a_different_run_refuses_to_resume_unless_asked(tmp_path, die_at_block, assert_same_records):
    die_at_block(0)
    with pytest.raises(RuntimeError, match="killed at block 0"):
        _ar(tmp_path / "w").quantize()
    with pytest.raises(CheckpointError, match="knobs"):
        _ar(tmp_path / "w", iters=4).quantize()
    with pytest.raises(CheckpointError, match="plan"):
        _ar(tmp_path / "w", scheme="W4G32").quantize()
    _, fresh = _ar(tmp_path / "w", iters=4, resume=False).quantize()
    _, ref = _ar(None, iters=4).quantize()
    assert_same_records(ref, fresh)


def test_a_foreign_directory_is_never_wiped(tmp_path):
    keep = tmp_path / "mine" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("important")
    with pytest.raises(CheckpointError, match="not a work directory"):
        _ar(keep.parent, resume=False).quantize()
    assert keep.read_text() == "important"
