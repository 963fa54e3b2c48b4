"""Processor registry: built-ins, user extensions, and real inputs from tiny LLaVA, Qwen2-VL and Pixtral processors."""

import pytest
import torch
from PIL import Image

from ar_core.errors import ArError
from ar_mllm import PROCESSORS, TEMPLATES, Processor, get_processor, register_processor
from ar_mllm.processors import fit_pixels, to_chat_content
from ar_mllm.tiny import IMAGE_TOKEN_ID, tiny_llava_processor, tiny_preprocessing, tiny_tokenizer

CONV = [{"role": "user", "content": "<image>\nwhat is in the picture?"}, {"role": "assistant", "content": "a man."}]
IMAGE_TOKENS = {"qwen2_vl": 250, "mistral3": IMAGE_TOKEN_ID}  # <|image_pad|>, [IMG] in the tiny tokenizers


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_builtin_names():
    assert {"basic", "hf", "llava", "qwen2_vl"} <= set(PROCESSORS)


def test_basic_is_text_only(tok):
    p = get_processor("basic", tokenizer=tok, template="llava")
    msgs = [{"role": "user", "content": "the water is good"}]
    out = p.get_input(msgs)
    assert out["input_ids"].tolist() == [tok(TEMPLATES["llava"].render(msgs)).input_ids]
    assert tok.decode(out["input_ids"][0]).endswith(". <unk> : the water is good")  # "USER:" after the system turn
    with pytest.raises(ArError, match="images"):
        p.get_input(CONV, images=[Image.new("RGB", (8, 8))])


def test_llava_expands_the_image_token_and_returns_pixels(tok):
    p = get_processor("llava", processor=tiny_llava_processor(tok), template="llava")
    out = p.get_input(CONV, images=[Image.new("RGB", (64, 48), (200, 10, 10))])
    assert out["pixel_values"].shape == (1, 3, 32, 32)
    assert int((out["input_ids"] == IMAGE_TOKEN_ID).sum()) == 16  # (32 / 8) ** 2 patches
    assert out["attention_mask"].shape == out["input_ids"].shape


def test_hf_uses_the_processor_chat_template(tok):
    hf = tiny_llava_processor(tok)
    hf.chat_template = ("{% for m in messages %}{{ m.role }}:{% for c in m.content %}"
                        "{% if c.type == 'image' %}<image>{% else %}{{ c.text }}{% endif %}{% endfor %}|{% endfor %}")
    p = get_processor("hf", processor=hf)
    assert p.prompt(CONV) == "user:<image>what is in the picture?|assistant:a man.|"
    out = p.get_input(CONV, images=[Image.new("RGB", (40, 40))])
    assert int((out["input_ids"] == IMAGE_TOKEN_ID).sum()) == 16
    own = get_processor("hf", processor=hf, template={"model_type": "t", "format_user": "Q {{content}}",
                                                      "extra_encode": True})
    assert own.prompt(CONV).startswith("Q <image>")  # extra_encode: the ar template renders, not the processor's


@pytest.mark.parametrize("family", ["qwen2_vl", "mistral3"])
def test_variable_resolution_processors_give_image_tokens_per_size(family):
    """The template's processor ("qwen2_vl" / "hf") around the family's real HF processor: one image token per
    merged patch, so a wide and a square image give different token counts."""
    _, hf, _ = tiny_preprocessing(family)
    p = get_processor(TEMPLATES[family].processor, processor=hf, template=family)
    wide, square = (p.get_input(CONV, images=[Image.new("RGB", size, (20, 90, 200))])
                    for size in [(300, 100), (80, 80)])
    for out in (wide, square):
        n_image = int((out["input_ids"] == IMAGE_TOKENS[family]).sum())
        if family == "qwen2_vl":  # 2 x 2 patches of 14 px per token
            assert n_image == int(out["image_grid_thw"].prod()) // 4
            assert torch.equal(out["mm_token_type_ids"], (out["input_ids"] == IMAGE_TOKENS[family]).long())
        else:  # 2 x 2 patches of 8 px per token
            height, width = out["image_sizes"][0].tolist()
            assert n_image == (height // 16) * (width // 16)
    assert wide["input_ids"].shape != square["input_ids"].shape


def test_hf_without_images_needs_no_processor(tok):
    out = get_processor("hf", tokenizer=tok).get_input([{"role": "user", "content": "the sea"}])
    assert out["input_ids"].tolist() == [tok("the sea").input_ids]
    with pytest.raises(ArError, match="processor"):
        get_processor("hf", tokenizer=tok).get_input(CONV, images=[Image.new("RGB", (8, 8))])


def test_to_chat_content_splits_on_image_placeholders():
    out = to_chat_content([{"role": "user", "content": "a <image> b <image>"}])
    assert out[0]["content"] == [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"},
                                  {"type": "image"}]


def test_fit_pixels_caps_the_pixel_count_and_keeps_multiples():
    small = fit_pixels(Image.new("RGB", (1000, 500)), max_pixels=100 * 28 * 28)
    w, h = small.size
    assert w * h <= 100 * 28 * 28 and w % 28 == 0 and h % 28 == 0 and w > h
    img = Image.new("RGB", (56, 28))
    assert fit_pixels(img, 10_000) is img


def test_users_can_register_a_processor(tok):
    @register_processor("test_mllm_shout")
    class Shout(Processor):
        def prompt(self, messages):
            return super().prompt(messages).upper()

    try:
        out = get_processor("test_mllm_shout", tokenizer=tok).get_input([{"role": "user", "content": "the sea"}])
        assert torch.equal(out["input_ids"], tok("THE SEA", return_tensors="pt").input_ids)  # lowercasing normalizer
        with pytest.raises(ArError, match="processor class"):
            register_processor("test_mllm_bad")(object)
        with pytest.raises(ArError, match="registered processor"):
            get_processor("nope", tokenizer=tok)
    finally:
        PROCESSORS.pop("test_mllm_shout")
