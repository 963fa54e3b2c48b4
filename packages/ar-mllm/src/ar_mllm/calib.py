"""Multimodal calibration: which data a VLM calibrates on, and image-text conversations -> padded model inputs.

Text-only calibration (the default) is ar_algos' own data path. Image-text calibration is used when the dataset is
a conversation set, when quant_nontext_module=True, or for models that cannot calibrate on text alone (mllama,
whose cross-attention layers are skipped without images). Samples may hold different numbers of tokens (images
of different sizes); they are right-padded to one length with attention_mask 0, so the padding carries no weight
in the block losses.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch
from PIL import Image

from ar_core.errors import DataError, field_error

from .conversations import SKIMAGE, is_conversation_dataset, load_conversations, parse_extra_data_dir, resolve_media
from .processors import Processor

log = logging.getLogger("ar_mllm.calib")

# Model types whose language tower cannot be calibrated on text alone.
NOT_TEXT_ONLY_MODELS = ("mllama", "mistral3_2")
# Inputs laid out along the token axis (dim 1): padded with the sequence.
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "cross_attention_mask", "mm_token_type_ids")
MAX_IMAGE_TEXT_SEQLEN = 512


def needs_image_data(model_type: str | None, dataset: Any, quant_nontext_module: bool) -> bool:
    """Whether calibration must use image-text conversations instead of plain text."""
    return (quant_nontext_module or model_type in NOT_TEXT_ONLY_MODELS or is_conversation_dataset(dataset)
            or prebuilt_samples(dataset) is not None)


def prebuilt_samples(dataset: Any) -> list[dict[str, torch.Tensor]] | None:
    """`dataset` padded when it is a list of ready model inputs with non-text keys (pixel_values, ...), else None."""
    if not isinstance(dataset, (list, tuple)) or not dataset or not all(isinstance(d, dict) for d in dataset):
        return None
    if not all("input_ids" in d for d in dataset) or all(set(d) <= {"input_ids", "attention_mask"} for d in dataset):
        return None
    samples = []
    for d in dataset:
        ids = torch.as_tensor(d["input_ids"])
        ids = ids[None] if ids.dim() == 1 else ids
        if ids.dim() != 2 or ids.shape[0] != 1:
            raise field_error(DataError, "input_ids shape", tuple(ids.shape), "[L] or [1, L] per sample")
        samples.append({**d, "input_ids": ids, "attention_mask": torch.as_tensor(
            d.get("attention_mask", torch.ones_like(ids))).reshape(ids.shape)})
    return pad_samples(samples, 0)


def image_text_dataset(dataset: Any) -> Any:
    """The conversation dataset to use: `dataset` when it is one, else the offline "skimage" set (with a note)."""
    if is_conversation_dataset(dataset):
        return dataset
    if dataset is not None:
        log.warning("dataset %r is text, but this run needs image-text data; calibrating on %r instead",
                    dataset, SKIMAGE)
    return SKIMAGE


def _load(kind: str, path) -> Any:
    return Image.open(path).convert("RGB") if kind == "image" else str(path)


def pad_samples(samples: list[dict[str, torch.Tensor]], pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Right-pad the token-axis inputs of every sample to one length (input_ids with pad_id, the rest 0).

    Equal lengths stay as they are. Otherwise every sample gets at least one pad token: the model then builds an
    attention-mask tensor for each of them (it passes None for an unpadded one, which ar_algos cannot stack).
    """
    lengths = {s["input_ids"].shape[1] for s in samples}
    length = max(lengths) + (len(lengths) > 1)
    out = []
    for s in samples:
        extra = length - s["input_ids"].shape[1]
        padded = dict(s)
        for key in TOKEN_KEYS:
            if key in s and extra:
                t = s[key]
                fill = torch.full((t.shape[0], extra, *t.shape[2:]), pad_id if key == "input_ids" else 0,
                                  dtype=t.dtype)
                padded[key] = torch.cat([t, fill], dim=1)
        out.append(padded)
    return out


def image_text_samples(processor: Processor, dataset: Any = SKIMAGE, extra_data_dir: Any = None,
                       nsamples: int = 128, seqlen: int = MAX_IMAGE_TEXT_SEQLEN, seed: int = 42,
                       pad_id: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Calibration samples from image-text conversations: model inputs ([1, L] ids, pixel tensors, ...).

    Conversations are shuffled with `seed`; one whose media file is missing, that the processor cannot encode, or
    that is longer than `seqlen` tokens (cutting it would cut image tokens) is skipped with a count in the log.
    All samples are padded to one length. Raises DataError when none is left.
    """
    for name, value, low in (("nsamples", nsamples, 1), ("seqlen", seqlen, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise field_error(DataError, name, value, f"an integer >= {low}")
    dirs = parse_extra_data_dir(extra_data_dir)
    conversations = load_conversations(dataset)
    random.Random(seed).shuffle(conversations)
    samples, skipped = [], {"missing media": 0, "too long": 0, "processor error": 0}
    for conv in conversations:
        if len(samples) == nsamples:
            break
        media = resolve_media(conv, dirs)
        if media is None:
            skipped["missing media"] += 1
            continue
        loaded = {kind: [_load(kind, p) for p in paths] for kind, paths in media.items()}
        try:
            inputs = processor.get_input(conv.messages, images=loaded.get("image"), videos=loaded.get("video"),
                                         audios=loaded.get("audio"))
        except (ValueError, TypeError, RuntimeError, KeyError) as exc:  # one bad sample must not stop the run
            log.warning("skipping a calibration conversation the processor cannot encode: %s", exc)
            skipped["processor error"] += 1
            continue
        if inputs["input_ids"].shape[1] > seqlen:
            skipped["too long"] += 1
            continue
        inputs.setdefault("attention_mask", torch.ones_like(inputs["input_ids"]))
        samples.append(inputs)
    if any(skipped.values()):
        log.warning("image-text calibration skipped: %s", ", ".join(f"{n} {k}" for k, n in skipped.items() if n))
    if not samples:
        raise DataError(f"no usable image-text calibration sample in {dataset!r} (skipped: {skipped}); check "
                        "extra_data_dir, the media files and seqlen")
    if len(samples) < nsamples:
        log.warning("only %d image-text calibration samples are available (nsamples=%d)", len(samples), nsamples)
    if pad_id is None:
        pad_id = getattr(processor.tokenizer, "pad_token_id", None) or 0
    return pad_samples(samples, pad_id)
