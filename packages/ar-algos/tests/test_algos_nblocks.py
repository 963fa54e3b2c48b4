"""nblocks: consecutive blocks tuned jointly, on the output of the group; records, resume and validation."""

import copy

import pytest
import torch

import ar_algos.driver as driver
from ar_algos import AutoRound
from ar_algos.blocks import find_blocks, get_module
from ar_algos.capture import BlockGroup, capture_block_inputs, forward_all
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError

SAMPLES = random_samples(4, 8)


def _ar(model=None, **kw):
    args = dict(scheme="W3G32", dataset=SAMPLES, nsamples=4, seqlen=8, batch_size=2, iters=3, verbose=False,
                nblocks=2, quant_lm_head=True)
    return AutoRound(model if model is not None else tiny_model("llama", num_hidden_layers=3), **{**args, **kw})


def test_groups_of_blocks_give_a_record_for_every_layer():
    model, records = _ar().quantize()
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(records) == linears  # 3 blocks in groups [0, 1] and [2], plus the untied lm_head
    for name, qt in records.items():
        assert torch.equal(model.get_submodule(name).weight.detach(), qt.dequantize())
    assert driver.block_groups(["a", "b", "c"], 2) == [["a", "b"], ["c"]]


def test_the_loss_is_taken_on_the_output_of_the_group(monkeypatch):
    model = tiny_model("llama", num_hidden_layers=2)
    reference = copy.deepcopy(model)
    calls = []
    real = driver.signround_block

    def spy(block, layers, schemes, inputs, target, *args, **kw):
        calls.append((block, sorted(schemes), target(torch.arange(inputs.shape[0]))))
        return real(block, layers, schemes, inputs, target, *args, **kw)

    monkeypatch.setattr(driver, "signround_block", spy)
    _ar(model, quant_lm_head=False).quantize()
    assert len(calls) == 1  # both blocks in one tuning run
    group, names, target = calls[0]
    assert isinstance(group, BlockGroup) and len(group) == 2
    assert {n.split(".")[0] for n in names} == {"0", "1"} and "1.mlp.down_proj" in names
    blocks = find_blocks(reference)
    inputs = capture_block_inputs(reference, blocks, SAMPLES)
    h = inputs.hidden
    for i, name in enumerate(blocks):
        h = forward_all(get_module(reference, name), inputs, i, h, batch_size=2)
    torch.testing.assert_close(target, h)  # the full-precision output of the last block of the group


def test_an_interrupted_grouped_run_resumes_bitwise_identical(tmp_path, die_at_block, assert_same_records):
    model = tiny_model("llama", num_hidden_layers=4)
    _, full = _ar(copy.deepcopy(model), work_dir=tmp_path / "a").quantize()
    seen = die_at_block(1)
    with pytest.raises(RuntimeError, match="killed at block 1"):
        _ar(copy.deepcopy(model), work_dir=tmp_path / "b").quantize()
    _, resumed = _ar(copy.deepcopy(model), work_dir=tmp_path / "b").quantize()
    assert seen == [0, 1, 1]  # two groups of two blocks; the second call started at the unfinished group
    assert_same_records(full, resumed)


@pytest.mark.parametrize("kw", [dict(nblocks=0), dict(nblocks=True), dict(nblocks=2, algorithm="awq")])
def test_bad_nblocks_raise_arerror_naming_it(kw):
    with pytest.raises(ArError, match="nblocks"):
        _ar(**{**kw, "iters": None})
