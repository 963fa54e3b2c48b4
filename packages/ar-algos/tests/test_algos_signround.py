"""SignRound, RTN and optimized RTN on single blocks and layers of tiny random models."""

import pytest
import torch
from torch import nn

from ar_algos.blocks import find_blocks, find_linears, get_module, weight_of
from ar_algos.capture import capture_block_inputs, forward_all
from ar_algos.config import make_config
from ar_algos.rtn import rtn_layers
from ar_algos.signround import masked_mse, signround_block
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError
from ar_core.presets import parse_scheme

W2 = parse_scheme("W2G32")


def _block_setup(seed=0):
    model = tiny_model("llama", seed=seed, hidden_size=128, intermediate_size=256, num_hidden_layers=1)
    samples = random_samples(16, 32, seed=seed)
    blocks = find_blocks(model)
    inputs = capture_block_inputs(model, blocks, samples)
    block = get_module(model, blocks[0])
    target = forward_all(block, inputs, 0, inputs.hidden, 8)
    layers = find_linears(block)
    return block, layers, inputs, target


def _run(cfg, seed=42, keep_outputs=False):
    block, layers, inputs, target = _block_setup()
    schemes = {n: W2 for n in layers}
    res = signround_block(block, layers, schemes, inputs.hidden, lambda idx: target[idx],
                          lambda idx: inputs.kwargs(0, idx), inputs.mask, cfg, seed=seed, keep_outputs=keep_outputs)
    return res, block, layers, inputs, target


@pytest.mark.parametrize("knobs", [dict(iters=5), dict(iters=1), dict(iters=5, not_use_best_mse=True)])
def test_kept_outputs_are_the_written_blocks_outputs_bit_for_bit(knobs):
    res, block, layers, inputs, target = _run(make_config(nsamples=16, batch_size=4, **knobs), keep_outputs=True)
    assert torch.equal(res.outputs, forward_all(block, inputs, 0, inputs.hidden, 4))
    plain = _run(make_config(nsamples=16, batch_size=4, **knobs))[0]
    assert plain.outputs is None and plain.loss_after == res.loss_after
    assert all(torch.equal(plain.records[n].codes, res.records[n].codes) for n in res.records)


def test_signround_loss_decreases_and_beats_rtn():
    res, block, layers, inputs, target = _run(make_config(iters=40, nsamples=16, batch_size=4))
    assert res.loss_after < 0.6 * res.loss_before
    q_out = forward_all(block, inputs, 0, inputs.hidden, 8)
    tuned_mse = masked_mse(q_out, target, inputs.mask).item()
    rblock, rlayers, rinputs, rtarget = _block_setup()
    rtn_layers(rlayers, {n: W2 for n in rlayers})
    rtn_mse = masked_mse(forward_all(rblock, rinputs, 0, rinputs.hidden, 8), rtarget, rinputs.mask).item()
    assert tuned_mse < 0.6 * rtn_mse
    assert abs(tuned_mse - res.loss_after) < 1e-3 * res.loss_after + 1e-9  # reported loss is the real one
    for name, qt in res.records.items():  # the model holds exactly the records' dequantized weights
        assert torch.equal(weight_of(layers[name]).detach(), qt.dequantize())
        assert qt.codes.dtype == torch.uint8 and int(qt.codes.max()) <= 3


def test_signround_same_seed_is_bitwise_reproducible_and_seed_matters():
    cfg = make_config(iters=6, nsamples=16, batch_size=4)
    a, b, c = _run(cfg)[0], _run(cfg)[0], _run(cfg, seed=7)[0]
    assert all(torch.equal(a.records[n].codes, b.records[n].codes) and
               torch.equal(a.records[n].scale, b.records[n].scale) for n in a.records)
    assert any(not torch.equal(a.records[n].codes, c.records[n].codes) for n in a.records)


@pytest.mark.parametrize("knobs", [dict(enable_adam=True), dict(enable_minmax_tuning=False),
                                   dict(not_use_best_mse=True), dict(gradient_accumulate_steps=2, batch_size=2)])
def test_signround_variants_improve_on_rtn(knobs):
    res = _run(make_config(**{"iters": 30, "nsamples": 16, "batch_size": 4, **knobs}))[0]
    assert res.loss_after < res.loss_before


def test_dynamic_max_gap_stops_early():
    calls = []
    cfg = make_config(iters=60, nsamples=16, batch_size=16, dynamic_max_gap=1, lr=0.5)
    block, layers, inputs, target = _block_setup()
    block.register_forward_pre_hook(lambda *a: calls.append(1))
    signround_block(block, layers, {n: W2 for n in layers}, inputs.hidden, lambda idx: target[idx],
                    lambda idx: inputs.kwargs(0, idx), inputs.mask, cfg, seed=0)
    assert len(calls) < 60  # a huge lr makes the loss stop improving after a few steps


def test_opt_rtn_beats_rtn_on_imatrix_weighted_error():
    torch.manual_seed(0)
    lin = nn.Linear(256, 64, bias=False)
    imatrix = torch.rand(256) ** 4 * 100
    scheme = parse_scheme("W3G64")
    w = lin.weight.detach().clone()
    plain = rtn_layers({"l": lin}, {"l": scheme})["l"]
    lin.weight.data.copy_(w)
    opt = rtn_layers({"l": lin}, {"l": scheme}, imatrix={"l": imatrix})["l"]

    def err(qt):
        return ((qt.dequantize() - w) ** 2 * imatrix).sum().item()

    assert err(opt) < 0.95 * err(plain)
    assert torch.equal(lin.weight.detach(), opt.dequantize())


def test_lr_rules_and_recipes():
    assert make_config(iters=200).layer_lr(4) == pytest.approx(1 / 200)
    assert make_config(iters=1000).layer_lr(2) == pytest.approx(2e-3)
    assert make_config(iters=1000).layer_lr(4) == pytest.approx(1e-3)
    assert make_config(iters=100, lr=0.05, minmax_lr=0.01).layer_minmax_lr(2) == 0.01
    best, light = make_config("best"), make_config("light")
    assert (best.iters, best.nsamples, light.iters, light.lr) == (1000, 512, 50, 5e-3)
    assert make_config("rtn").algorithm == "rtn" and make_config("opt-rtn").algorithm == "opt-rtn"
    assert make_config(iters=0).algorithm == "opt-rtn" and make_config().algorithm == "signround"
    assert make_config("best", iters=10).iters == 10  # the user's knob wins over the recipe


def test_disable_opt_rtn_means_a_plain_rtn_start_as_in_the_reference():
    assert make_config(iters=5).start_from_opt_rtn  # our default: the optimized-RTN start
    assert not make_config(iters=5, disable_opt_rtn=True).start_from_opt_rtn
    assert not make_config("rtn", iters=5).start_from_opt_rtn
    assert make_config(iters=0, disable_opt_rtn=True).algorithm == "rtn"
    with pytest.raises(ArError, match="start_from_opt_rtn"):
        make_config(iters=5, disable_opt_rtn=True, start_from_opt_rtn=True)


@pytest.mark.parametrize("from_opt_rtn", [True, False])
def test_signround_starts_from_opt_rtn_or_plain_rtn(from_opt_rtn):
    from ar_algos.rtn import collect_imatrix
    from ar_core.quant import quantize

    block, layers, inputs, target = _block_setup()
    schemes = {n: W2 for n in layers}
    with collect_imatrix(layers) as imatrix:
        forward_all(block, inputs, 0, inputs.hidden, 8)
    start = {n: quantize(weight_of(layers[n]).detach(), W2, search=from_opt_rtn, imatrix=imatrix[n]) for n in layers}
    rtn = {n: quantize(weight_of(layers[n]).detach(), W2) for n in layers}
    cfg = make_config(iters=1, lr=1e-9, nsamples=16, batch_size=4, start_from_opt_rtn=from_opt_rtn)
    res = signround_block(block, layers, schemes, inputs.hidden, lambda idx: target[idx],
                          lambda idx: inputs.kwargs(0, idx), inputs.mask, cfg, seed=0, imatrix=imatrix)
    for n, qt in res.records.items():  # a step of 1e-9 moves nothing: the result is the start
        assert torch.equal(qt.codes, start[n].codes) and torch.equal(qt.scale, start[n].scale)
    assert any(not torch.equal(start[n].scale, rtn[n].scale) for n in layers) == from_opt_rtn
