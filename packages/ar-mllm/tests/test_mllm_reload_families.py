"""Every tiny VLM family: quantize with AutoRoundMLLM (text tower only, and with quant_nontext_module=True, which
calibrates on two photos of different sizes through the family's Hugging Face processor), export auto_round with
the processor files, reload with ar_kernels.load, match the in-memory fake-quant model and generate from a photo
and a text prompt through the saved processor."""

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from ar_core.registry import FORMATS
from ar_mllm import AutoRoundMLLM
from ar_mllm.conversations import skimage_dir
from ar_mllm.tiny import FAMILIES, encode_image_prompt, tiny_preprocessing, tiny_vlm

ar_kernels = pytest.importorskip("ar_kernels")
from ar_kernels.qlinear.base import QuantLinear  # noqa: E402

QUESTION = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the picture?"}]}]
CALIB_PHOTOS = {"coffee.png": ("tell me about this picture .", "a cup of coffee on a table ."),
                "astronaut.png": ("what do you see here ?", "a man in front of a flag .")}
# Families whose processors keep the aspect ratio: the two calibration photos give different image shapes.
VARIABLE_SIZE = {"qwen2_vl": "image_grid_thw", "qwen2_5_vl": "image_grid_thw", "mistral3": "image_sizes"}
# Quick enough for the default run; the other combinations are marked slow.
FAST = {("llava", False), ("qwen2_vl", True), ("qwen2_5_vl", True), ("mistral3", True)}


def _photo(name: str) -> Image.Image:
    return Image.open(skimage_dir() / name).convert("RGB")


def _auto_round_writer() -> None:
    if not FORMATS.is_available("auto_round"):  # entry points not installed: register the writer directly
        import ar_export

        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))


def _conversations():
    """Two llava-style image-text records about photos of different shapes (coffee 400x600, astronaut 512x512)."""
    return [{"image": str(skimage_dir() / photo), "conversations": [
        {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}
        for photo, (question, answer) in CALIB_PHOTOS.items()]


PHI3_V_MISSING = ("Phi-3.5-vision (model_type phi3_v) runs only with its trust_remote_code modeling file from the hub "
                  "repo microsoft/Phi-3.5-vision-instruct: transformers 5.23 has no Phi3V class and the hub is "
                  "offline; the only PyPI copy (phi3v-spatial 0.0.1, a Phi-3-vision fork) fails to build under "
                  "transformers 5 (KeyError 'type' on the new rope_scaling dict)")
CASES = [pytest.param(f, nontext, id=f"{f}-{'nontext' if nontext else 'text'}",
                      marks=() if (f, nontext) in FAST else pytest.mark.slow)
         for f in FAMILIES for nontext in (False, True)]
CASES.append(pytest.param("phi3_v", False, id="phi3_v-text", marks=pytest.mark.skip(reason=PHI3_V_MISSING)))


@pytest.mark.parametrize("family,nontext", CASES)
def test_quantize_export_reload_generate(family, nontext, tmp_path):
    _auto_round_writer()
    model = tiny_vlm(family)
    tokenizer, processor, image_processor = tiny_preprocessing(family)
    if nontext or family == "mllama":  # mllama's cross-attention layers need images to calibrate
        dataset, seqlen = _conversations(), 96
    else:
        g = torch.Generator().manual_seed(0)
        dataset, seqlen = [{"input_ids": torch.randint(4, 200, (1, 16), generator=g)} for _ in range(2)], 16
    ar = AutoRoundMLLM(model, tokenizer, processor=processor, image_processor=image_processor, dataset=dataset,
                       quant_nontext_module=nontext, scheme="W4A16G16", iters=0, nsamples=2, seqlen=seqlen,
                       batch_size=2, verbose=False)
    if ar.samples is not None:  # calibrated on both photos through the processor, padded to one length
        assert len(ar.samples) == 2 and all("pixel_values" in s for s in ar.samples)
        assert ar.samples[0]["input_ids"].shape == ar.samples[1]["input_ids"].shape
        if family in VARIABLE_SIZE:
            first, second = (s[VARIABLE_SIZE[family]] for s in ar.samples)
            assert not torch.equal(first, second)
    _, paths = ar.quantize_and_save(tmp_path / "q", format="auto_round")
    records = ar.autoround.records
    out = paths[0]
    assert any(".vision" in n or "visual" in n or "projector" in n for n in records) == nontext
    for name in ("chat_template.jinja", "processor_config.json", "preprocessor_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name

    loaded = ar_kernels.load(out, dtype=torch.float32)
    assert type(loaded) is type(model)
    assert set(loaded.ar_backends) == set(records)
    assert all(isinstance(loaded.get_submodule(n), QuantLinear) for n in records)

    processor2 = AutoProcessor.from_pretrained(out)
    assert type(processor2) is type(processor)
    inputs = encode_image_prompt(processor2, QUESTION, _photo("astronaut.png"))
    want_ids = encode_image_prompt(processor, QUESTION, _photo("astronaut.png"))["input_ids"]
    assert torch.equal(inputs["input_ids"], want_ids)
    with torch.no_grad():
        got, want = loaded(**inputs).logits, model(**inputs).logits  # `model` holds the fake-quant weights
    assert torch.allclose(got, want, atol=1e-3, rtol=1e-3), float((got - want).abs().max())
    generated = loaded.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    if family in VARIABLE_SIZE:  # one batch of two photos of different sizes, left-padded for generation
        text = processor2.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
        batch = processor2(text=[text, text], images=[_photo("astronaut.png"), _photo("coffee.png")],
                           padding=True, padding_side="left", return_tensors="pt")
        assert not torch.equal(*batch[VARIABLE_SIZE[family]])
        assert (batch["attention_mask"] == 0).any()  # the photos give different numbers of image tokens
        generated = loaded.generate(**batch, max_new_tokens=3, do_sample=False)
        assert generated.shape == (2, batch["input_ids"].shape[1] + 3)
