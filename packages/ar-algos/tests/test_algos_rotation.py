"""Rotation: Hadamard construction, float-exact R1/R2/R4 and block rotations, restore on load, lower RTN error."""

import copy

import pytest
import torch

from ar_algos.blocks import find_blocks, find_linears, get_module
from ar_algos.rotation import (OnlineHadamard, block_hadamard, hadamard_matrix, has_hadamard, restore_rotation,
                               rotate_model)
from ar_algos.rtn import rtn_layers
from ar_algos.tiny import tiny_model
from ar_core.errors import ArError
from ar_core.scheme import QuantScheme

TOKENS = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(0))


def _model(family="llama", **kw):
    model = tiny_model(family, **kw)
    with torch.no_grad():  # non-trivial norm scales, so that folding them matters
        g = torch.Generator().manual_seed(1)
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model


def _logits(model):
    with torch.no_grad():
        return model(input_ids=TOKENS).logits


@pytest.mark.parametrize("n", [1, 2, 12, 20, 28, 36, 64, 76, 576, 896])
def test_hadamard_is_orthonormal_with_pm1_entries(n):
    h = hadamard_matrix(n)
    torch.testing.assert_close(h @ h.T, torch.eye(n, dtype=h.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(h.abs() * n ** 0.5, torch.ones(n, n, dtype=h.dtype))


def test_hadamard_unknown_order_needs_random():
    assert not has_hadamard(52)  # 52 = 13 * 4: neither 51 nor 25 is a prime
    with pytest.raises(ArError, match="random=True"):
        hadamard_matrix(52)
    q = hadamard_matrix(52, random=True, seed=3)
    torch.testing.assert_close(q @ q.T, torch.eye(52, dtype=q.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(q, hadamard_matrix(52, random=True, seed=3))


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral"])
@pytest.mark.parametrize("mode,random", [("r1", False), ("r1r2", False), ("r1r2r4", True), ("r4", False)])
def test_rotation_preserves_logits(family, mode, random):
    model = _model(family, tie_word_embeddings=True)
    ref = _logits(model)
    config = rotate_model(model, mode, random=random, seed=5)
    assert config["mode"] == mode and model.config.rotation_config == config
    if "r1" in mode:
        assert model.lm_head.weight is not model.model.embed_tokens.weight
        assert not torch.allclose(model.model.embed_tokens.weight, _model(family).model.embed_tokens.weight)
    torch.testing.assert_close(_logits(model), ref, atol=1e-4, rtol=1e-4)


def test_rotation_random_orthogonal_for_unknown_hidden_size():
    model = _model("llama", hidden_size=52, num_attention_heads=2, num_key_value_heads=1)
    ref = _logits(model)
    with pytest.raises(ArError, match="rotation size"):
        rotate_model(copy.deepcopy(model), "r1")
    rotate_model(model, "r1", random=True)
    torch.testing.assert_close(_logits(model), ref, atol=1e-4, rtol=1e-4)


def test_block_hadamard_preserves_logits_and_state_dict_keys():
    model = _model("qwen2")
    ref, keys = _logits(model), set(model.state_dict())
    config = block_hadamard(model, 32)
    assert set(model.state_dict()) == keys  # the online matrices are rebuilt, never saved
    assert len(config["online"][0]["layers"]) == 14
    torch.testing.assert_close(_logits(model), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ArError, match="block_size"):
        block_hadamard(_model("qwen2"), 48)


def test_restore_rotation_rebuilds_online_hooks_on_load():
    model = _model("llama")
    ref = _logits(model)
    config = rotate_model(model, "r1r2r4", random=True, seed=7)
    assert isinstance(model.model.layers[0].mlp.down_proj.online_rotation, OnlineHadamard)
    loaded = tiny_model("llama", tie_word_embeddings=False)
    loaded.load_state_dict(model.state_dict())
    assert not torch.allclose(_logits(loaded), ref, atol=1e-3)  # without the hooks the rotated model is wrong
    assert restore_rotation(loaded, config) == 2
    torch.testing.assert_close(_logits(loaded), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ArError, match="already has an online rotation"):
        restore_rotation(loaded, config)


def test_rotation_rejects_bad_mode_and_layouts():
    with pytest.raises(ArError, match="rotation mode"):
        rotate_model(_model(), "r3")
    with pytest.raises(ArError, match="RMSNorm"):
        rotate_model(tiny_model("gemma2"), "r1")
    with pytest.raises(ArError, match="nn.Linear"):
        rotate_model(tiny_model("opt"), "r1")


def _rtn_error(model, ref, scheme):
    model = copy.deepcopy(model)
    for b in find_blocks(model):
        layers = find_linears(get_module(model, b))
        rtn_layers(layers, {n: scheme for n in layers})
    return (_logits(model) - ref).pow(2).mean()


@pytest.mark.parametrize("mode", ["r1", "r1r2r4"])
def test_rotation_lowers_w4_rtn_error_with_weight_outliers(mode):
    model = _model("llama")
    with torch.no_grad():  # a few huge weights per layer, as trained LLMs have
        g = torch.Generator().manual_seed(2)
        for b in find_blocks(model):
            for layer in find_linears(get_module(model, b)).values():
                idx = torch.randint(0, layer.weight.numel(), (32,), generator=g)
                layer.weight.view(-1)[idx] *= 25.0
    ref = _logits(model)
    scheme = QuantScheme(bits=4, group_size=32)
    plain = _rtn_error(model, ref, scheme)
    rotate_model(model, mode)
    rotated = _rtn_error(model, ref, scheme)
    assert rotated < 0.6 * plain, (rotated, plain)


def test_signround_tunes_through_the_online_rotation():
    """SignRound's functional forward runs the R4 pre-hook, so it tunes against rotated activations."""
    from ar_algos.capture import capture_block_inputs, run_block
    from ar_algos.config import make_config
    from ar_algos.signround import signround_block
    from ar_algos.tiny import random_samples

    model = _model("llama")
    rotate_model(model, "r1r4")
    blocks = find_blocks(model)
    inputs = capture_block_inputs(model, blocks, random_samples(4, 32))
    block = get_module(model, blocks[0])
    with torch.no_grad():
        ref = run_block(block, inputs.hidden, inputs.kwargs(0, slice(None)))
    layers = find_linears(block)
    cfg = make_config(iters=20, nsamples=4, seqlen=32, batch_size=2)
    result = signround_block(block, layers, {n: QuantScheme(bits=4, group_size=32) for n in layers}, inputs.hidden,
                             lambda idx: ref[idx], lambda idx: inputs.kwargs(0, idx), inputs.mask, cfg, seed=0)
    with torch.no_grad():
        err = (run_block(block, inputs.hidden, inputs.kwargs(0, slice(None))) - ref).pow(2).mean().item()
    assert err == pytest.approx(result.loss_after, rel=0.05)
    assert err < 1e-2 * ref.pow(2).mean().item()


def test_rotated_rtn_error_matches_the_rotated_basis():
    from ar_algos.rotation.select import rtn_error

    g = torch.Generator().manual_seed(2)
    w, x = torch.randn(8, 64, generator=g), torch.randn(100, 64, generator=g)
    scheme, r = QuantScheme(bits=3, group_size=32), hadamard_matrix(32).float()
    big = torch.block_diag(r, r)
    wr, xr = w @ big, x @ big  # the rotated layer: weights W R, inputs x R
    direct = ((wr - rtn_layers({"l": _linear(wr)}, {"l": scheme})["l"].dequantize()) @ xr.T).pow(2).sum()
    assert rtn_error(w, scheme, x.T @ x, r) == pytest.approx(direct.item(), rel=1e-3)


def _linear(weight):
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer
