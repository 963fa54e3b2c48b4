"""End to end: LLaVA from the real SmolLM2 + a random CLIP tower -> text-only quantization of the language tower ->
auto_round export with the processor -> reload by transformers with the auto-round package, and by ar_kernels.load
-> generate from a photo."""

import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from ar_core.registry import FORMATS
from ar_mllm import AutoRoundMLLM
from ar_mllm.conversations import skimage_dir
from ar_mllm.demo import smol_llava


def _auto_round_writer():
    if not FORMATS.is_available("auto_round"):  # entry points not installed: register the writer directly
        import ar_export

        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))


@pytest.mark.slow
@pytest.mark.consumers  # reloads through transformers with the auto-round package
def test_smol_llava_quantize_export_reload_generate(tmp_path):
    _auto_round_writer()
    model, tokenizer, processor = smol_llava()
    image = Image.open(skimage_dir() / "astronaut.png").convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "What is the capital of France?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 49  # (224 / 32) ** 2
    with torch.no_grad():
        fp_logits = model(**inputs).logits
    vision_before = model.model.vision_tower.encoder.layers[0].mlp.fc1.weight.detach().clone()

    ar = AutoRoundMLLM(model, tokenizer, processor=processor, template="default", scheme="W4A16G64", iters=0,
                       nsamples=8, seqlen=128, batch_size=4, verbose=False)
    assert ar.samples is None  # text-only calibration
    _, paths = ar.quantize_and_save(tmp_path / "q", format="auto_round")
    out = paths[0]
    with torch.no_grad():
        q_logits = model(**inputs).logits
    assert torch.equal(model.model.vision_tower.encoder.layers[0].mlp.fc1.weight, vision_before)
    agree = (q_logits.argmax(-1) == fp_logits.argmax(-1)).float().mean().item()
    assert agree > 0.5, agree  # 4-bit SmolLM2 still follows the 16-bit model on most tokens (0.73 measured)

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava"
    assert config["quantization_config"]["block_name_to_quantize"] == "model.language_model.layers"
    for name in ("processor_config.json", "chat_template.jinja", "tokenizer.json", "ar_mllm_template.json"):
        assert (out / name).is_file(), name
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.language_model.layers.0.mlp.up_proj.qweight" in keys
    assert "model.vision_tower.encoder.layers.0.mlp.fc1.weight" in keys  # vision tower kept 16-bit
    assert not any(k.startswith("model.vision_tower.") and k.endswith("qweight") for k in keys)

    from transformers import AutoModelForImageTextToText, AutoProcessor

    reloaded = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
    reprocessor = AutoProcessor.from_pretrained(out)
    re_inputs = reprocessor(text=[reprocessor.apply_chat_template(messages, add_generation_prompt=True,
                                                                  tokenize=False)],
                            images=[image], return_tensors="pt")
    assert torch.equal(re_inputs["input_ids"], inputs["input_ids"])
    with torch.no_grad():
        re_logits = reloaded(**re_inputs).logits.float()
    assert (re_logits.argmax(-1) == q_logits.argmax(-1)).float().mean().item() > 0.95
    generated = reloaded.generate(**re_inputs, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip(), answer

    import ar_kernels  # our own loader builds the same LLaVA with QuantLinear language layers

    ours = ar_kernels.load(out, dtype=torch.float32)
    assert len(ours.ar_backends) == 30 * 7
    assert all(n.startswith("model.language_model.layers.") for n in ours.ar_backends)
    with torch.no_grad():
        our_logits = ours(**re_inputs).logits
    assert torch.allclose(our_logits, q_logits, atol=1e-2, rtol=1e-2), float((our_logits - q_logits).abs().max())
    assert ours.generate(**re_inputs, max_new_tokens=10, do_sample=False).shape[1] > inputs["input_ids"].shape[1]
