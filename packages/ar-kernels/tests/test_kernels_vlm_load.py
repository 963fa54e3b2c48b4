"""`ar_kernels.load` and `explain` on a vision-language checkpoint: a tiny LLaVA whose language tower is quantized."""

import pytest
import torch

from ar_kernels import explain, load
from ar_kernels.loading.auto import model_class
from ar_kernels.qlinear.base import QuantLinear
from ar_kernels.testing import quantize_block_linears, save_quantized

TEXT_BLOCKS = "model.language_model.layers"


def tiny_llava(seed=0):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    text = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=256, max_position_embeddings=64)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    return LlavaForConditionalGeneration(LlavaConfig(text_config=text, vision_config=vision,
                                                     image_token_index=255)).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("llava")
    model = tiny_llava()
    layers = quantize_block_linears(model, skip=("vision_tower",))
    ref = save_quantized(path, model, layers, {"quantization_config": {
        "quant_method": "auto-round", "packing_format": "auto_round:auto_gptq", "bits": 4, "group_size": 32,
        "sym": True, "data_type": "int", "block_name_to_quantize": TEXT_BLOCKS}})
    return path, ref, set(layers)


def test_model_class_follows_the_config():
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, LlamaConfig,
                              LlavaForConditionalGeneration)

    assert model_class(tiny_llava().config) is AutoModelForImageTextToText
    assert model_class(AutoConfig.for_model("mllama")) is AutoModelForImageTextToText  # not the text-only CausalLM
    assert model_class(LlamaConfig()) is AutoModelForCausalLM
    config = AutoConfig.for_model("llava")
    config.model_type = "not_a_known_type"
    config.architectures = ["LlavaForConditionalGeneration"]
    assert model_class(config) is LlavaForConditionalGeneration


def test_load_builds_the_vlm_with_quantized_language_layers(checkpoint):
    path, ref, quantized = checkpoint
    model = load(path, dtype=torch.float32)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert set(model.ar_backends) == quantized and all(n.startswith(TEXT_BLOCKS + ".") for n in quantized)
    assert all(isinstance(model.get_submodule(n), QuantLinear) for n in quantized)
    assert isinstance(model.model.vision_tower.encoder.layers[0].mlp.fc1, torch.nn.Linear)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 200, (1, 24), generator=g)
    ids[0, 2:18] = 255  # 16 image tokens: (32 / 8) ** 2 patches
    inputs = {"input_ids": ids, "pixel_values": torch.randn(1, 3, 32, 32, generator=g)}
    with torch.no_grad():
        got, want = model(**inputs).logits, ref(**inputs).logits
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), float((got - want).abs().max())
    assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] == 27


def test_explain_reads_a_vlm_checkpoint(checkpoint):
    path, _, quantized = checkpoint
    rows = {r["layer"]: r for r in explain(path)}
    assert {n for n, r in rows.items() if r["quantized"]} == quantized
    assert rows["model.vision_tower.encoder.layers.0.mlp.fc1"]["scheme"] == "16-bit"
    assert rows[f"{TEXT_BLOCKS}.0.mlp.up_proj"]["backend"] == "cpu"
