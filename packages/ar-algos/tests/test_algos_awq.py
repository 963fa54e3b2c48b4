"""AWQ: mappings per architecture, float-exact folding, and lower quantization error than plain RTN."""

import copy

import pytest
import torch

from ar_algos.awq import awq_block, find_mappings
from ar_algos.awq.clip import clip_weight
from ar_algos.blocks import find_blocks, find_linears, get_module
from ar_algos.capture import capture_block_inputs, run_block
from ar_algos.rtn import rtn_layers
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError
from ar_core.quant import fake_quantize
from ar_core.scheme import QuantScheme


def _setup(family, outliers=False, **overrides):
    model = tiny_model(family, **overrides)
    blocks = find_blocks(model)
    block = get_module(model, blocks[0])
    if outliers:  # a few activation channels 30x larger than the rest, as in real LLMs
        with torch.no_grad():
            for norm in (block.input_layernorm, block.post_attention_layernorm):
                norm.weight[:4] *= 30.0
    inputs = capture_block_inputs(model, blocks, random_samples(4, 32))
    return model, block, inputs


def _schemes(block, bits):
    return {n: QuantScheme(bits=bits, group_size=32) for n in find_linears(block)}


def _out(block, inputs):
    with torch.no_grad():
        return run_block(block, inputs.hidden, inputs.kwargs(0, slice(None)))


def _kw(inputs):
    return lambda idx: inputs.kwargs(0, idx)


def _smooth_names(family, **kw):
    model = tiny_model(family, **kw)
    return [m.smooth for m in find_mappings(get_module(model, find_blocks(model)[0]))]


def test_mappings_per_architecture():
    assert _smooth_names("llama") == ["input_layernorm", "post_attention_layernorm", "mlp.up_proj"]  # GQA: no v -> o
    assert _smooth_names("qwen2", num_key_value_heads=4) == ["input_layernorm", "self_attn.v_proj",
                                                             "post_attention_layernorm", "mlp.up_proj"]
    assert _smooth_names("opt") == ["self_attn_layer_norm", "self_attn.v_proj", "final_layer_norm", "fc1"]
    assert _smooth_names("qwen3_moe") == ["input_layernorm"]  # routed experts are skipped
    assert _smooth_names("gemma2") == []


@pytest.mark.parametrize("family,kw", [("llama", {}), ("qwen2", {"num_key_value_heads": 4}), ("qwen3", {}),
                                       ("opt", {})])
def test_awq_folding_preserves_float_outputs(family, kw):
    model, block, inputs = _setup(family, **kw)
    ref = _out(block, inputs)
    logits = model(input_ids=torch.arange(20)[None]).logits
    scales = awq_block(block, inputs.hidden, _kw(inputs), _schemes(block, 4), n_grid=6)
    assert set(scales) == {m.smooth for m in find_mappings(block)}
    assert any((s - 1).abs().max() > 1e-3 for s in scales.values())  # something was actually rescaled
    torch.testing.assert_close(_out(block, inputs), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model(input_ids=torch.arange(20)[None]).logits, logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bits,duo", [(3, True), (4, True), (4, False), (3, "both")])
def test_awq_lowers_block_error_vs_rtn(bits, duo):
    _, block, inputs = _setup("llama", outliers=True)
    ref = _out(block, inputs)
    schemes = _schemes(block, bits)
    rtn_block = copy.deepcopy(block)
    rtn_layers(find_linears(rtn_block), schemes)
    awq = copy.deepcopy(block)
    awq_block(awq, inputs.hidden, _kw(inputs), schemes, duo_scaling=duo)
    rtn_layers(find_linears(awq), schemes)
    err_rtn = (_out(rtn_block, inputs) - ref).pow(2).mean()
    err_awq = (_out(awq, inputs) - ref).pow(2).mean()
    assert err_awq < 0.9 * err_rtn, (err_awq, err_rtn)


def test_awq_skips_unquantized_layers_and_validates():
    _, block, inputs = _setup("llama")
    only_mlp = {"mlp.down_proj": QuantScheme(bits=4, group_size=32)}
    assert set(awq_block(block, inputs.hidden, _kw(inputs), only_mlp, n_grid=4)) == {"mlp.up_proj"}
    with pytest.raises(ArError, match="duo_scaling"):
        awq_block(block, inputs.hidden, _kw(inputs), only_mlp, duo_scaling="yes")
    with pytest.raises(ArError, match="n_grid"):
        awq_block(block, inputs.hidden, _kw(inputs), only_mlp, n_grid=1)


def test_clip_never_raises_output_error_and_clamps():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    w[:, 5] *= 8  # a long-tailed weight: clipping helps
    x = torch.randn(256, 64)
    scheme = QuantScheme(bits=3, group_size=32, sym=False)
    clipped = clip_weight(w, x, scheme)
    err = lambda v: (x @ (w - fake_quantize(v, scheme)).T).pow(2).sum()
    assert err(clipped) < err(w)
    assert clipped.abs().max() <= w.abs().max()


def test_awq_with_clip_runs_and_changes_weights():
    _, block, inputs = _setup("llama", outliers=True)
    before = block.mlp.gate_proj.weight.detach().clone()
    awq_block(block, inputs.hidden, _kw(inputs), _schemes(block, 3), n_grid=4, clip=True)
    assert not torch.equal(before, block.mlp.gate_proj.weight)


def test_awq_then_signround_composes():
    """`awq,auto_round`: SignRound tunes the AWQ-transformed weights through the driver's block API."""
    from ar_algos.config import make_config
    from ar_algos.signround import signround_block

    _, block, inputs = _setup("llama", outliers=True)
    ref = _out(block, inputs)
    schemes = _schemes(block, 3)
    rtn_block = copy.deepcopy(block)
    rtn_layers(find_linears(rtn_block), schemes)
    awq_block(block, inputs.hidden, _kw(inputs), schemes, n_grid=8)
    cfg = make_config(iters=30, nsamples=4, seqlen=32, batch_size=2)
    result = signround_block(block, find_linears(block), schemes, inputs.hidden, lambda idx: ref[idx],
                             lambda idx: inputs.kwargs(0, idx), inputs.mask, cfg, seed=0)
    assert set(result.records) == set(schemes)
    err_rtn = (_out(rtn_block, inputs) - ref).pow(2).mean()
    assert (_out(block, inputs) - ref).pow(2).mean() < 0.5 * err_rtn


def test_awq_mask_ignores_padded_tokens():
    _, block, inputs = _setup("llama", outliers=True)
    schemes = _schemes(block, 4)
    alone = awq_block(copy.deepcopy(block), inputs.hidden[:2], _kw(inputs), schemes, n_grid=6, batch_size=2)
    noisy = inputs.hidden.clone()
    noisy[2:] *= 1000.0  # garbage on "padding" only
    mask = inputs.mask.clone()
    mask[2:] = 0
    masked = awq_block(copy.deepcopy(block), noisy, _kw(inputs), schemes, n_grid=6, batch_size=2, mask=mask)
    unmasked = awq_block(copy.deepcopy(block), noisy, _kw(inputs), schemes, n_grid=6, batch_size=2)
    for name, s in alone.items():
        torch.testing.assert_close(masked[name], s, atol=1e-4, rtol=1e-4)
    assert any(not torch.allclose(unmasked[n], s, atol=1e-3) for n, s in alone.items())
