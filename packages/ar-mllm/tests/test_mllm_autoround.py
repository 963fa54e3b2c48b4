"""AutoRoundMLLM on tiny random VLMs: text tower only by default, image-text calibration, vision modules on
request, mllama's switch to image data, Qwen2-VL images of different sizes, and the saved processor files."""

import json

import pytest
import torch

from ar_core.errors import ArError
from ar_core.registry import FORMATS
from ar_mllm import AutoRoundMLLM
from ar_mllm.blocks import find_mllm_blocks
from ar_mllm.tiny import FAMILIES, IMAGE_TOKEN_ID, tiny_llava_processor, tiny_tokenizer, tiny_vlm

KNOBS = dict(iters=2, nsamples=2, batch_size=2, scheme="W4A16G32", verbose=False)


def _count_calls(module):
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _weights(model, prefix):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_text_only_by_default_quantizes_only_the_language_blocks(tok):
    model = tiny_vlm("llava")
    vision_before = _weights(model, "model.vision_tower")
    calls = _count_calls(model.model.vision_tower)
    ar = AutoRoundMLLM(model, tok, processor=tiny_llava_processor(tok), dataset=["the water is good " * 20] * 4,
                       seqlen=16, **KNOBS)
    assert ar.samples is None
    _, records = ar.quantize()
    assert records and all(n.startswith("model.language_model.layers.") for n in records)
    assert len(records) == 2 * 7  # q, k, v, o, gate, up, down per block
    assert not calls  # text-only calibration never runs the vision tower
    for n, w in _weights(model, "model.vision_tower").items():
        assert torch.equal(w, vision_before[n]), n


def test_image_text_calibration_runs_the_vision_tower(tok):
    model = tiny_vlm("llava")
    calls = _count_calls(model.model.vision_tower)
    ar = AutoRoundMLLM(model, tok, processor=tiny_llava_processor(tok), dataset="skimage", **KNOBS)
    assert len(ar.samples) == 2 and "pixel_values" in ar.samples[0]
    _, records = ar.quantize()
    assert len(calls) >= 2  # every calibration sample went through the vision tower
    assert all(n.startswith("model.language_model.layers.") for n in records)


def test_quant_nontext_module_adds_the_vision_linears(tok):
    model = tiny_vlm("llava")
    ar = AutoRoundMLLM(model, tok, processor=tiny_llava_processor(tok), quant_nontext_module=True, **KNOBS)
    assert ar.samples is not None  # switched to image-text data
    _, records = ar.quantize()
    vision = [n for n in records if n.startswith("model.vision_tower.")]
    assert "model.vision_tower.encoder.layers.0.mlp.fc1" in vision
    assert records["model.vision_tower.encoder.layers.0.mlp.fc1"].scheme.group_size == 32  # the run's scheme
    assert "model.multi_modal_projector.linear_1" in records
    assert "lm_head" not in records


def _mllama_sample(length, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 200, (1, length), generator=g)
    ids[0, 1] = IMAGE_TOKEN_ID
    cross = torch.zeros(1, length, 1, 1, dtype=torch.long)
    cross[0, 1:] = 1
    return {"input_ids": ids, "attention_mask": torch.ones(1, length, dtype=torch.long),
            "pixel_values": torch.randn(1, 1, 1, 3, 32, 32, generator=g), "aspect_ratio_ids": torch.tensor([[1]]),
            "aspect_ratio_mask": torch.tensor([[[1]]]), "cross_attention_mask": cross}


def test_mllama_switches_to_image_data_and_calibrates_its_cross_attention(tok):
    with pytest.raises(ArError, match="processor"):
        AutoRoundMLLM(tiny_vlm("mllama"), tok, **KNOBS)  # text alone cannot reach the cross-attention layers
    model = tiny_vlm("mllama")
    ar = AutoRoundMLLM(model, tok, dataset=[_mllama_sample(10, 0), _mllama_sample(13, 1)], **KNOBS)
    assert ar.autoround.block_names == [f"model.language_model.layers.{i}" for i in range(3)]
    _, records = ar.quantize()
    assert "model.language_model.layers.1.cross_attn.q_proj" in records
    assert all(n.startswith("model.language_model.layers.") for n in records)


def _qwen_sample(grid_h, grid_w, seed):
    """Ready Qwen2-VL inputs for one image of grid_h x grid_w patches (one token per 2x2 patches)."""
    g = torch.Generator().manual_seed(seed)
    n_tokens = grid_h * grid_w // 4
    ids = torch.cat([torch.randint(4, 200, (3,), generator=g), torch.tensor([252] + [250] * n_tokens + [253]),
                     torch.randint(4, 200, (5,), generator=g)])[None]
    return {"input_ids": ids, "mm_token_type_ids": (ids == 250).long(),
            "pixel_values": torch.randn(grid_h * grid_w, 3 * 2 * 14 * 14, generator=g),
            "image_grid_thw": torch.tensor([[1, grid_h, grid_w]])}


def test_qwen2_vl_images_of_different_sizes(tok):
    model = tiny_vlm("qwen2_vl")
    calls = _count_calls(model.model.visual)
    samples = [_qwen_sample(2, 2, 0), _qwen_sample(4, 6, 1), _qwen_sample(2, 4, 2)]
    ar = AutoRoundMLLM(model, tok, dataset=samples, **{**KNOBS, "nsamples": 3})
    widths = {s["input_ids"].shape[1] for s in ar.samples}
    assert len(widths) == 1 and widths.pop() == 3 + 2 + 6 + 5 + 1  # the longest sample plus one pad
    _, records = ar.quantize()
    assert len(calls) >= 3 and all(n.startswith("model.language_model.layers.") for n in records)


def test_saves_processor_files_and_template(tok, tmp_path):
    if not FORMATS.is_available("fake"):  # entry points not installed: register the writer directly
        import ar_export

        FORMATS.register("fake", ar_export.get_writer("fake"))
    model = tiny_vlm("llava")
    ar = AutoRoundMLLM(model, tok, processor=tiny_llava_processor(tok), dataset="skimage", **KNOBS)
    _, paths = ar.quantize_and_save(tmp_path / "out", format="fake")
    out = paths[0]
    assert (out / "preprocessor_config.json").is_file() or (out / "processor_config.json").is_file()
    assert (out / "tokenizer.json").is_file()
    assert json.loads((out / "ar_mllm_template.json").read_text())["model_type"] == "llava"
    assert json.loads((out / "config.json").read_text())["model_type"] == "llava"


def test_loads_a_model_directory_with_its_processor(tok, tmp_path):
    model, processor = tiny_vlm("llava"), tiny_llava_processor(tok)
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    ar = AutoRoundMLLM(str(tmp_path / "m"), dataset="skimage", **KNOBS)
    assert ar.processor is not None and ar.samples[0]["pixel_values"].shape == (1, 3, 32, 32)
    assert ar.autoround.block_names == ["model.language_model.layers.0", "model.language_model.layers.1"]
    with pytest.raises(ArError, match="config.json"):
        AutoRoundMLLM(str(tmp_path / "nothing"), **KNOBS)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "mllama"])
def test_every_family_quantizes_its_language_tower_on_text(family, tok):
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(4, 200, (1, 16), generator=g),
             "attention_mask": torch.ones(1, 16, dtype=torch.long)} for _ in range(2)]
    model = tiny_vlm(family)
    ar = AutoRoundMLLM(model, tok, dataset=data, **{**KNOBS, "iters": 1, "seqlen": 16, "scheme": "W4A16G16"})
    assert ar.samples is None
    _, records = ar.quantize()
    blocks = find_mllm_blocks(model)[0]
    assert len(records) == 2 * 7 and all(n.rsplit(".", 2)[0] in blocks for n in records)
