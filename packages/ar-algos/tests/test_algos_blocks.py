"""Block discovery, input capture and MoE unfusion on tiny random models of every supported family."""

import pytest
import torch

from ar_algos.blocks import find_blocks, find_lm_head, find_linears, get_module
from ar_algos.capture import capture_block_inputs, capture_head_inputs, forward_all
from ar_algos.moe import UnfusedExperts, unfuse_experts
from ar_algos.plan import layer_infos
from ar_algos.tiny import FAMILIES, random_samples, tiny_model
from ar_core.errors import DataError

BLOCK_PREFIX = {"opt": "model.decoder.layers.", "gpt2": "transformer.h."}


def _logits(model, samples):
    with torch.no_grad():
        return torch.cat([model(**s).logits for s in samples])


@pytest.mark.parametrize("family", FAMILIES)
def test_block_chain_reproduces_model_logits(family):
    """Cached block-0 inputs run through every block, then the head, give the model's own logits."""
    model = tiny_model(family)
    samples = random_samples(3, 12)
    ref = _logits(model, samples)
    unfuse_experts(model)
    blocks = find_blocks(model)
    assert blocks == [f"{BLOCK_PREFIX.get(family, 'model.layers.')}{i}" for i in range(2)]
    inputs = capture_block_inputs(model, blocks, samples)
    assert inputs.hidden.shape[:2] == (3, 12)
    h = inputs.hidden
    for i, name in enumerate(blocks):
        h = forward_all(get_module(model, name), inputs, i, h, batch_size=2)
    head = find_lm_head(model, blocks)
    x = capture_head_inputs(model, blocks, head, h, samples)
    torch.testing.assert_close(get_module(model, head)(x), ref, atol=5e-4, rtol=1e-3)


def test_capture_keeps_per_block_masks_for_sliding_window_layers():
    """Gemma-3 sliding layers get their own (different) mask when the sequence exceeds the window."""
    model = tiny_model("gemma3", layer_types=["sliding_attention", "full_attention"], sliding_window=4)
    inputs = capture_block_inputs(model, find_blocks(model), random_samples(2, 12))
    m0, m1 = inputs.shared[0]["attention_mask"], inputs.shared[1]["attention_mask"]
    assert m0 is not None and (m1 is None or not torch.equal(m0, m1))


def test_capture_stacks_arguments_that_differ_between_samples():
    """With padding the 4-D masks differ per sample and are stacked; the loss mask zeroes the padding."""
    model = tiny_model("llama")
    samples = random_samples(2, 8)
    samples[0]["attention_mask"][0, :1] = 0
    with pytest.raises(DataError, match="attention_mask"):
        capture_block_inputs(model, find_blocks(model), samples)  # padded and unpadded mixed
    samples[1]["attention_mask"][0, :3] = 0
    samples[0]["attention_mask"][0, :1] = 1
    samples[0]["attention_mask"][0, -1] = 0
    inputs = capture_block_inputs(model, find_blocks(model), samples)
    assert "attention_mask" in inputs.per_sample[0]
    assert inputs.per_sample[0]["attention_mask"].shape[0] == 2
    assert inputs.mask[1, :3].sum() == 0 and inputs.mask[0].sum() == 7
    assert inputs.kwargs(0, slice(1, 2))["attention_mask"].shape[0] == 1


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_unfused_experts_are_exact_and_routers_stay_16bit(family):
    model = tiny_model(family)
    samples = random_samples(2, 10)
    ref = _logits(model, samples)
    names = unfuse_experts(model)
    assert len(names) == 2 and all(isinstance(get_module(model, n), UnfusedExperts) for n in names)
    torch.testing.assert_close(_logits(model, samples), ref, atol=1e-5, rtol=1e-5)
    block = get_module(model, find_blocks(model)[0])
    linears = find_linears(block)
    assert "mlp.experts.3.down_proj" in linears and "mlp.experts.0.gate_proj" in linears
    infos = {i.name: i for i in layer_infos(model, find_blocks(model))}
    assert infos["model.layers.0.mlp.experts.1.up_proj"].kind == "expert"
    assert infos["model.layers.0.mlp.experts.1.up_proj"].fused_group == "model.layers.0.mlp.experts.1.gate_up"


def test_gpt2_conv1d_layers_are_found_with_out_in_shapes():
    model = tiny_model("gpt2")
    infos = {i.name: i for i in layer_infos(model, find_blocks(model))}
    c_fc = infos["transformer.h.0.mlp.c_fc"]
    assert (c_fc.out_features, c_fc.in_features, c_fc.kind) == (256, 64, "conv1d")
    assert infos["lm_head"].in_block is False
