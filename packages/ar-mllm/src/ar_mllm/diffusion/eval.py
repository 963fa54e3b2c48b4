"""Compare a quantized pipeline with its 16-bit source on fixed prompts and seeds.

Both pipelines run every prompt with the same generator seed; the final latents are compared by PSNR (peak: the
16-bit latents' range) and the decoded images (values in [0, 1]) by PSNR and SSIM (11-px Gaussian window, smaller
for tiny images). A CLIP score (100 x cosine of image and prompt embeddings, the mean over prompts) is added for
both pipelines when `clip_model` names a local CLIP model directory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ar_core.errors import ArError, field_error

EVAL_PROMPTS = ("a photo of a dog sitting on a couch", "a bowl of oranges on a blue table",
                "a mountain lake at sunrise", "a yellow school bus on a city street")


def psnr(ref: torch.Tensor, test: torch.Tensor, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB of `test` against `ref` (peak: ref's max - min when None); inf when equal."""
    ref, test = ref.double(), test.double()
    mse = torch.mean((ref - test) ** 2).item()
    peak = float(ref.max() - ref.min()) if peak is None else peak
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def ssim(ref: torch.Tensor, test: torch.Tensor) -> float:
    """Mean structural similarity of two image batches [N, H, W, C] with values in [0, 1]."""
    x, y = (t.double().permute(0, 3, 1, 2) for t in (ref, test))
    size = min(11, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(x.shape[1], 1, size, size)

    def blur(t):
        return F.conv2d(t, win, groups=t.shape[1])

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean().item()


def generate(pipe: Any, prompts: list[str], seed: int, kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(final latents, images [N, H, W, C] in [0, 1]) of `pipe` on each prompt with generator seed `seed` + i."""
    latents, images = [], []

    def keep(_pipe, _step, _t, tensors):
        last["latents"] = tensors["latents"]
        return tensors

    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            last: dict[str, torch.Tensor] = {}
            img = pipe(prompt, generator=torch.Generator("cpu").manual_seed(seed + i), output_type="pt",
                       callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"], **kwargs).images
            latents.append(last["latents"].float().cpu())
            images.append(img.float().cpu().permute(0, 2, 3, 1))
    return torch.cat(latents), torch.cat(images)


def clip_score(model_dir: str | Path, images: torch.Tensor, prompts: list[str]) -> float:
    """Mean 100 x max(cos(image, prompt), 0) with the local CLIP model in `model_dir`."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(str(model_dir)).eval(), CLIPProcessor.from_pretrained(str(model_dir))
    pixels = [(img.clamp(0, 1) * 255).round().to(torch.uint8).numpy() for img in images]
    inputs = processor(text=prompts, images=pixels, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    cos = F.cosine_similarity(out.image_embeds, out.text_embeds, dim=-1)
    return (100 * cos.clamp(min=0)).mean().item()


def compare_pipelines(quantized: Any, reference: Any, prompts: list[str] | None = None, seed: int = 0,
                      clip_model: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Latent PSNR, image PSNR and SSIM of `quantized` against `reference` (two pipeline objects) on `prompts`
    (default: four fixed captions), plus CLIP scores when `clip_model` is a local CLIP directory. `kwargs` go to
    every pipeline call (num_inference_steps, guidance_scale, height, width, max_sequence_length)."""
    prompts = list(prompts or EVAL_PROMPTS)
    if clip_model is not None and not Path(clip_model).is_dir():
        raise field_error(ArError, "clip_model", str(clip_model), "a local CLIP model directory, or None")
    ref_lat, ref_img = generate(reference, prompts, seed, kwargs)
    q_lat, q_img = generate(quantized, prompts, seed, kwargs)
    result: dict[str, Any] = {"prompts": len(prompts), "seed": seed, "latent_psnr": psnr(ref_lat, q_lat),
                              "image_psnr": psnr(ref_img, q_img, 1.0), "image_ssim": ssim(ref_img, q_img)}
    if clip_model is None:
        result["clip_score"] = None
        result["clip_note"] = "no CLIP model given (clip_model= a local CLIP directory)"
    else:
        result["clip_score"] = clip_score(clip_model, q_img, prompts)
        result["clip_score_16bit"] = clip_score(clip_model, ref_img, prompts)
    return result
