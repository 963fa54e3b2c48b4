"""Language-tower block discovery on tiny random VLMs of every supported family."""

import pytest

from ar_core.errors import ArError
from ar_mllm import block_lists, find_mllm_blocks, nontext_linears
from ar_mllm.blocks import modality
from ar_mllm.tiny import FAMILIES, tiny_vlm

# family -> (language tower list, vision block lists)
EXPECTED = {
    "llava": ("model.language_model.layers", ["model.vision_tower.encoder.layers"]),
    "qwen2_vl": ("model.language_model.layers", ["model.visual.blocks"]),
    "qwen2_5_vl": ("model.language_model.layers", ["model.visual.blocks"]),
    "mllama": ("model.language_model.layers", ["model.vision_model.transformer.layers",
                                               "model.vision_model.global_transformer.layers"]),
    "gemma3": ("model.language_model.layers", ["model.vision_tower.encoder.layers"]),
    "idefics3": ("model.text_model.layers", ["model.vision_model.encoder.layers"]),
    "smolvlm": ("model.text_model.layers", ["model.vision_model.encoder.layers"]),
    "mistral3": ("model.language_model.layers", ["model.vision_tower.transformer.layers"]),
}


def _names(prefix, model):
    return [f"{prefix}.{i}" for i in range(len(model.get_submodule(prefix)))]


@pytest.mark.parametrize("family", FAMILIES)
def test_text_blocks_by_default_vision_blocks_on_request(family):
    model = tiny_vlm(family)
    text, vision = EXPECTED[family]
    assert find_mllm_blocks(model) == [_names(text, model)]
    assert find_mllm_blocks(model, quant_nontext_module=True) == [_names(text, model)] + [
        _names(v, model) for v in vision]
    lists = block_lists(model)
    assert lists.audio == [] and lists.other_text == []
    vision_linears = nontext_linears(model)
    assert vision_linears and not any(n.startswith(text + ".") for n in vision_linears)
    assert "lm_head" not in vision_linears


def test_mllama_language_tower_holds_the_cross_attention_layers():
    model = tiny_vlm("mllama")
    blocks = find_mllm_blocks(model)[0]
    kinds = {type(model.get_submodule(b)).__name__ for b in blocks}
    assert kinds == {"MllamaSelfAttentionDecoderLayer", "MllamaCrossAttentionDecoderLayer"}


def test_modality_and_bad_flag():
    assert modality("model.audio_tower.layers") == "audio"
    assert modality("model.multi_modal_projector.linear_1") == "vision"
    assert modality("model.language_model.layers.0.mlp.up_proj") == "text"
    with pytest.raises(ArError, match="quant_nontext_module"):
        find_mllm_blocks(tiny_vlm("llava"), quant_nontext_module="yes")
