"""Tiny random vision-language models, word-level tokenizers and their processors, all built offline.

For tests and examples: every family of `FAMILIES` is built from transformers config classes with a 2-layer
vision tower and a 2-layer (3 for mllama) text tower, vocabulary 256. `tiny_preprocessing(family)` gives the
tokenizer (with the family's special tokens and a chat template), processor and image processor that feed it, and
`encode_image_prompt` turns a chat with one image into model inputs. Every family has a real Hugging Face
processor (Qwen2-VL and Qwen2.5-VL also carry a video processor; their processors and Mistral-3's Pixtral processor
need torchvision). Qwen2-VL, Qwen2.5-VL and Mistral-3 keep the aspect ratio of a photo, so photos of different
shapes give different numbers of image tokens; the other families resize every image to one 32-px size.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers as tf

VOCAB = 256
IMAGE_TOKEN_ID = 255
_TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
               patch_size=8)
_MROPE = {"rope_type": "default", "mrope_section": [2, 3, 3]}


def _qwen_vl(cls: str, vision: dict) -> Any:
    return getattr(tf, cls)(text_config=dict(**_TEXT, rope_scaling=_MROPE), vision_config=vision,
                            image_token_id=250, video_token_id=251, vision_start_token_id=252)


def _configs() -> dict[str, Any]:
    return {
        "llava": lambda: tf.LlavaConfig(text_config=tf.LlamaConfig(**_TEXT), vision_config=tf.CLIPVisionConfig(
            **_VISION), image_token_index=IMAGE_TOKEN_ID),
        "qwen2_vl": lambda: _qwen_vl("Qwen2VLConfig", dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2,
                                                           mlp_ratio=2, patch_size=14, spatial_merge_size=2)),
        "qwen2_5_vl": lambda: _qwen_vl("Qwen2_5_VLConfig", dict(depth=2, hidden_size=32, out_hidden_size=64,
                                                                intermediate_size=64, num_heads=2,
                                                                fullatt_block_indexes=[1], window_size=28)),
        "mllama": lambda: tf.MllamaConfig(
            text_config=dict(_TEXT, num_hidden_layers=3, cross_attention_layers=[1]),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                               attention_heads=2, image_size=32, patch_size=8, vision_output_dim=64,
                               intermediate_layers_indices=[0], max_num_tiles=1,
                               supported_aspect_ratios=[[1, 1]]),
            image_token_index=IMAGE_TOKEN_ID),
        "gemma3": lambda: tf.Gemma3Config(text_config=dict(_TEXT, head_dim=16, sliding_window=8),
                                          vision_config=_VISION, mm_tokens_per_image=4,
                                          image_token_index=IMAGE_TOKEN_ID, boi_token_index=253, eoi_token_index=254),
        "idefics3": lambda: tf.Idefics3Config(text_config=dict(model_type="llama", **_TEXT), vision_config=_VISION,
                                              scale_factor=2, image_token_id=IMAGE_TOKEN_ID),
        "smolvlm": lambda: tf.SmolVLMConfig(text_config=dict(model_type="llama", **_TEXT), vision_config=_VISION,
                                            scale_factor=2, image_token_id=IMAGE_TOKEN_ID),
        "mistral3": lambda: tf.Mistral3Config(text_config=dict(model_type="mistral", **_TEXT),
                                              vision_config=dict(_VISION, head_dim=16, image_size=64),
                                              image_token_index=IMAGE_TOKEN_ID, spatial_merge_size=2),
    }


FAMILIES = tuple(_configs())


def tiny_vlm(family: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A random-weight vision-language model of `family` (one of FAMILIES) in eval mode."""
    torch.manual_seed(seed)
    config = _configs()[family]()
    return tf.AutoModelForImageTextToText.from_config(config, dtype=dtype).eval()


_WORDS = ("the a an of and to in is it that was he she for on with as his her at by be this had not are but from "
          "or have they which one you were all we when there can what so out if about who them then up some more "
          "into time has two like him see could no than been its now people my made over did down only way find "
          "use may water long little very after words called just where most know get through back much go good "
          "new write our me man too any day same right look think also around another came come work three word "
          "must because does part even place well such here take why help put different away again off went old "
          "number great tell men say small every found still between name should home big give air line set own "
          "under read last never us left end along while might next sound below saw something thought both few "
          "those always show large often together asked house world going want school important until form food "
          "keep children feet land side without boy once animal life enough took four head above kind began almost "
          "live page got earth need far hand high year mother light country father let night picture being study "
          "second soon story since white ever paper hard near sentence better best across during today however "
          "sure knew try told young sun thing whole hear example heard several change answer room sea against top "
          "turned learn point city play toward five himself usually money seen didn't car morning i'm body upon "
          "family later turn move face door cut done group true leave").split()


def tiny_tokenizer(specials: dict[str, int] | None = None, named: dict[str, str] | None = None,
                   chat_template: str | None = None) -> tf.PreTrainedTokenizerFast:
    """A word-level tokenizer: <pad>=0, <s>=1, </s>=2, <unk>=3, English words and punctuation (< 240), and the
    special tokens `specials` (token -> id in 240..255; default {"<image>": 255}). `named` gives some of them
    attribute names (e.g. {"boi_token": "<start_of_image>"} -> tokenizer.boi_token_id)."""
    specials_at = {"<image>": IMAGE_TOKEN_ID} if specials is None else specials
    base = ["<pad>", "<s>", "</s>", "<unk>"]
    punct = [".", ",", ":", "?", "!", "'", "\"", "-"]
    # ids 240..255 stay free for the models' own special tokens (Qwen2-VL's image/video/vision-start ids)
    words = [w for w in dict.fromkeys(_WORDS) if w.isalpha()][:240 - len(base) - len(punct)]
    vocab = {tok: i for i, tok in enumerate(base + words + punct)}
    vocab.update(specials_at)
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t in base + list(specials_at)]
    spec = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(json.dumps(spec))
        tok = tf.PreTrainedTokenizerFast(tokenizer_file=str(path), pad_token="<pad>", bos_token="<s>",
                                         eos_token="</s>", unk_token="<unk>", extra_special_tokens=named or {},
                                         chat_template=chat_template)
    tok.add_special_tokens({"additional_special_tokens": list(specials_at)})
    return tok


def tiny_llava_processor(tokenizer: Any = None) -> tf.LlavaProcessor:
    """A LlavaProcessor for `tiny_vlm("llava")`: 32-px CLIP images, 16 image tokens (CLS dropped), the tokenizer."""
    images = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return tf.LlavaProcessor(image_processor=images, tokenizer=tokenizer or tiny_tokenizer(), patch_size=8,
                             vision_feature_select_strategy="default", num_additional_image_tokens=1)


# Per family: the special tokens at the ids the tiny configs use, and the text that stands for one image in a prompt.
_QWEN_TOKENS = {"<|image_pad|>": 250, "<|video_pad|>": 251, "<|vision_start|>": 252, "<|vision_end|>": 253}
_IDEFICS_TOKENS = {"<image>": IMAGE_TOKEN_ID, "<fake_token_around_image>": 254, "<global-img>": 253,
                   "<end_of_utterance>": 252}
_PROMPT_IMAGE = {"llava": ("<image>", {"<image>": IMAGE_TOKEN_ID}),
                 "qwen2_vl": ("<|vision_start|><|image_pad|><|vision_end|>", _QWEN_TOKENS),
                 "qwen2_5_vl": ("<|vision_start|><|image_pad|><|vision_end|>", _QWEN_TOKENS),
                 "mllama": ("<|image|>", {"<|image|>": IMAGE_TOKEN_ID}),
                 "gemma3": ("<start_of_image>", {"<image_soft_token>": IMAGE_TOKEN_ID, "<start_of_image>": 253,
                                                 "<end_of_image>": 254}),
                 "idefics3": ("<image>", _IDEFICS_TOKENS), "smolvlm": ("<image>", _IDEFICS_TOKENS),
                 "mistral3": ("[IMG]", {"[IMG]": IMAGE_TOKEN_ID, "[IMG_BREAK]": 254, "[IMG_END]": 253})}


def tiny_chat_template(image_text: str) -> str:
    """A plain chat template: "role: text" lines, {"type": "image"} items rendered as `image_text`."""
    return ("{% for message in messages %}{{ message['role'] }}: {% if message['content'] is string %}"
            "{{ message['content'] }}{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}"
            + image_text + "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant: {% endif %}")


# Qwen2-VL: between 56 x 56 and 112 x 112 pixels in 14-px patches, 2 x 2 patches per token (4 to 16 tokens)
_QWEN_PIXELS = dict(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2)


def _image_processor(family: str) -> Any:
    square = {"height": 32, "width": 32}
    idefics = dict(do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    if family in ("qwen2_vl", "qwen2_5_vl"):
        return tf.Qwen2VLImageProcessorPil(**_QWEN_PIXELS)
    if family == "mllama":
        return tf.MllamaImageProcessorPil(size=square, max_image_tiles=1)
    if family == "gemma3":
        return tf.Gemma3ImageProcessorPil(size=square)
    if family in ("idefics3", "smolvlm"):
        return tf.Idefics3ImageProcessorPil(**idefics)
    if family == "mistral3":
        return tf.PixtralImageProcessorPil(size={"longest_edge": 64}, patch_size=8)
    return tiny_llava_processor().image_processor


def tiny_preprocessing(family: str) -> tuple[Any, Any, Any]:
    """(tokenizer with a chat template, HF processor, image processor) that feed `tiny_vlm(family)`.

    SmolVLM uses Idefics3Processor, which writes the same prompt when images are not split; Mistral-3 uses
    PixtralProcessor (8-px patches merged 2 x 2).
    """
    image_text, specials = _PROMPT_IMAGE[family]
    named = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"} \
        if family == "gemma3" else None
    tokenizer = tiny_tokenizer(specials, named, tiny_chat_template(image_text))
    images = _image_processor(family)
    template = tokenizer.chat_template
    if family == "llava":
        processor = tiny_llava_processor(tokenizer)
        processor.chat_template = template
    elif family == "gemma3":
        processor = tf.Gemma3Processor(images, tokenizer, chat_template=template, image_seq_length=4)
    elif family in ("idefics3", "smolvlm"):
        processor = tf.Idefics3Processor(images, tokenizer, image_seq_len=4, chat_template=template)
    elif family == "mllama":
        processor = tf.MllamaProcessor(images, tokenizer, chat_template=template)
    elif family in ("qwen2_vl", "qwen2_5_vl"):
        videos = tf.Qwen2VLVideoProcessor(**_QWEN_PIXELS)
        processor_class = tf.Qwen2VLProcessor if family == "qwen2_vl" else tf.Qwen2_5_VLProcessor
        processor = processor_class(images, tokenizer, videos, chat_template=template)
    else:
        processor = tf.PixtralProcessor(images, tokenizer, patch_size=8, spatial_merge_size=2, chat_template=template)
    return tokenizer, processor, images


def encode_image_prompt(processor: Any, messages: list[dict], image: Any) -> dict[str, torch.Tensor]:
    """Model inputs ([1, ...] tensors) for a chat with one image, through the processor's chat template with the
    generation prompt added."""
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return dict(processor(text=[text], images=[image], return_tensors="pt"))
