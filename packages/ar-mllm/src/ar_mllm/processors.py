"""Processors: turn a conversation plus its images (videos, audio) into a model's input tensors.

A processor class is registered under a name (`register_processor`); a template's `processor` field picks one.
Each instance wraps the tokenizer, the Hugging Face processor and/or image processor, and the chat template, and
offers `get_input(messages, images=None, videos=None, audios=None)` -> dict of [1, ...] tensors. Conversations use
the generic "<image>" placeholder in user text; processors turn it into what the model expects.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from PIL import Image

from ar_core.errors import ArError, field_error

IMAGE_PLACEHOLDER = "<image>"
PROCESSORS: dict[str, type["Processor"]] = {}


def register_processor(name: str) -> Callable[[type["Processor"]], type["Processor"]]:
    """Class decorator: register a `Processor` subclass under `name` (replacing any earlier one)."""
    def add(cls: type[Processor]) -> type[Processor]:
        if not (isinstance(cls, type) and issubclass(cls, Processor)):
            raise field_error(ArError, "processor class", cls, "a subclass of ar_mllm.processors.Processor")
        PROCESSORS[name] = cls
        return cls
    return add


def get_processor(name: str, tokenizer: Any = None, processor: Any = None, image_processor: Any = None,
                  template: Any = None) -> "Processor":
    """An instance of the processor registered as `name`."""
    if name not in PROCESSORS:
        raise field_error(ArError, "processor", name, f"a registered processor: {', '.join(sorted(PROCESSORS))}")
    return PROCESSORS[name](tokenizer=tokenizer, processor=processor, image_processor=image_processor,
                            template=template)


class Processor:
    """Text only: the template renders the conversation and the tokenizer encodes it (no images)."""

    def __init__(self, tokenizer: Any = None, processor: Any = None, image_processor: Any = None,
                 template: Any = None):
        from .templates import get_template

        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        self.image_processor = image_processor if image_processor is not None else \
            getattr(processor, "image_processor", None)
        self.template = get_template(template)
        if self.tokenizer is None:
            raise field_error(ArError, "tokenizer", None, "a tokenizer, or a processor that carries one")

    def prompt(self, messages: list[dict[str, Any]]) -> str:
        """The conversation rendered as text by the template."""
        return self.template.render(messages)

    def get_input(self, messages: list[dict[str, Any]], images: list | None = None, videos: list | None = None,
                  audios: list | None = None) -> dict[str, torch.Tensor]:
        """Model inputs for one conversation, each tensor with a leading batch dimension of 1."""
        if images or videos or audios:
            raise field_error(ArError, "images", f"{len(images or videos or audios)} item(s)",
                              "none: the 'basic' processor is text only (use 'hf', 'llava' or 'qwen2_vl')")
        return dict(self.tokenizer(self.prompt(messages), return_tensors="pt"))


register_processor("basic")(Processor)


def _needs(proc: Processor, what: str) -> Any:
    if proc.processor is None:
        raise field_error(ArError, "processor", None, f"a Hugging Face processor (AutoProcessor) to encode {what}")
    return proc.processor


def _call_processor(proc: Processor, text: str, images, videos, audios) -> dict[str, torch.Tensor]:
    hf = _needs(proc, "images") if (images or videos or audios) else proc.processor
    if hf is None:
        return dict(proc.tokenizer(text, return_tensors="pt"))
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if images:
        kwargs["images"] = list(images)
    if videos:
        kwargs["videos"] = list(videos)
    if audios:
        kwargs["audio"] = list(audios)
    return dict(hf(**kwargs))


@register_processor("llava")
class LlavaProcessor(Processor):
    """The template renders the text (keeping or replacing "<image>"); the HF processor expands the image tokens."""

    def get_input(self, messages, images=None, videos=None, audios=None):
        """Model inputs: the template's text and the images through the HF processor."""
        return _call_processor(self, self.prompt(messages), images, videos, audios)


def to_chat_content(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages whose string content holds "<image>" placeholders -> HF chat format with {"type": "image"} items."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            items: list[dict[str, str]] = []
            for i, piece in enumerate(content.split(IMAGE_PLACEHOLDER)):
                if i:
                    items.append({"type": "image"})
                if piece.strip():
                    items.append({"type": "text", "text": piece.strip()})
            content = items
        out.append({"role": m.get("role", "user"), "content": content})
    return out


@register_processor("hf")
class ChatTemplateProcessor(Processor):
    """The HF processor's own chat template renders the conversation ("<image>" -> an image item); the ar
    template renders it instead when the processor has none or the template sets extra_encode."""

    def prompt(self, messages):
        """The conversation through the processor's chat template, or the ar template (none, or extra_encode)."""
        hf = self.processor
        if hf is not None and getattr(hf, "chat_template", None) and not self.template.extra_encode:
            return hf.apply_chat_template(to_chat_content(messages), tokenize=False, add_generation_prompt=False)
        return super().prompt(messages)

    def get_input(self, messages, images=None, videos=None, audios=None):
        """Model inputs from the chat-template text and the media through the HF processor."""
        return _call_processor(self, self.prompt(messages), images, videos, audios)


def fit_pixels(image: Image.Image, max_pixels: int, multiple: int = 28) -> Image.Image:
    """`image` scaled down (aspect kept) to at most `max_pixels` pixels, sides rounded to `multiple`."""
    w, h = image.size
    scale = min(1.0, math.sqrt(max_pixels / (w * h)))
    nw = max(multiple, int(w * scale) // multiple * multiple)
    nh = max(multiple, int(h * scale) // multiple * multiple)
    return image if (nw, nh) == (w, h) else image.resize((nw, nh), Image.BICUBIC)


@register_processor("qwen2_vl")
class Qwen2VLProcessor(ChatTemplateProcessor):
    """Qwen2-VL / Qwen2.5-VL: the chat-template path, with images scaled to at most `max_pixels` so calibration
    sequences stay short (the number of image tokens grows with the pixel count)."""

    max_pixels = 128 * 28 * 28

    def get_input(self, messages, images=None, videos=None, audios=None):
        """Model inputs, images first scaled down to `max_pixels`."""
        images = [fit_pixels(im, self.max_pixels) for im in images] if images else images
        return super().get_input(messages, images, videos, audios)
