"""Processor registry: built-ins, user extensions, and real inputs from a tiny LLaVA processor."""

import pytest
import torch
from PIL import Image

from ar_core.errors import ArError
from ar_mllm import PROCESSORS, TEMPLATES, Processor, get_processor, register_processor
from ar_mllm.processors import fit_pixels, to_chat_content
from ar_mllm.tiny import IMAGE_TOKEN_ID, tiny_llava_processor, tiny_tokenizer

CONV = [{"role": "user", "content": "<image>\nwhat is in the picture?"}, {"role": "assistant", "content": "a man."}]


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
