"""Calibration samples of a DiT: the first block's inputs at every denoising step of a few prompts.

The pipeline runs as usual (16-bit, fixed seed) while a hook on the first block records what it receives; each
transformer call gives one sample per batch row (SD3 runs the unconditional and the conditional prompt as two
rows). A sample is a dict of [1, ...] tensors that `BlockChain.forward` takes, with input_ids/attention_mask of the
chain's sequence length (text + image tokens) for ar_algos' driver.
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.errors import ArError, field_error


def _rows(call: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    hidden, text, temb = call["hidden_states"], call["encoder_hidden_states"], call["temb"]
    rope = call.get("image_rotary_emb")
    out = []
    for r in range(hidden.shape[0]):
        length = text.shape[1] + hidden.shape[1]
        sample = {"input_ids": torch.zeros(1, length, dtype=torch.long),
                  "attention_mask": torch.ones(1, length, dtype=torch.long),
                  "hidden_states": hidden[r:r + 1].detach().cpu(), "encoder_hidden_states": text[r:r + 1].detach().cpu(),
                  "temb": temb[r:r + 1].detach().cpu()}
        if rope is not None:
            sample["rope_cos"], sample["rope_sin"] = rope[0][None].detach().cpu(), rope[1][None].detach().cpu()
        out.append(sample)
    return out


def call_kwargs(num_inference_steps: int, guidance_scale: float, height: int | None, width: int | None,
                max_sequence_length: int | None, seed: int) -> dict[str, Any]:
    """Keyword arguments of a pipeline call with these knobs (None knobs left to the pipeline's defaults)."""
    for name, value in (("num_inference_steps", num_inference_steps), ("height", height), ("width", width),
                        ("max_sequence_length", max_sequence_length)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise field_error(ArError, name, value, "a positive integer" + (" or None" if name != "num_inference_steps"
                                                                             else ""))
    if not isinstance(guidance_scale, (int, float)) or isinstance(guidance_scale, bool) or guidance_scale < 0:
        raise field_error(ArError, "guidance_scale", guidance_scale, "a number >= 0")
    kwargs: dict[str, Any] = {"num_inference_steps": num_inference_steps, "guidance_scale": float(guidance_scale)}
    kwargs.update({k: v for k, v in (("height", height), ("width", width),
                                     ("max_sequence_length", max_sequence_length)) if v is not None})
    return kwargs


def capture_samples(pipe: Any, block: torch.nn.Module, prompts: list[str], kwargs: dict[str, Any],
                    seed: int) -> list[dict[str, torch.Tensor]]:
    """Run `pipe` on each prompt (latent output, generator seeded with `seed` + i) and return the first block's
    inputs at every step, one sample per batch row."""
    calls: list[dict[str, Any]] = []

    def record(_module, args, kw):
        names = ("hidden_states", "encoder_hidden_states", "temb", "image_rotary_emb")
        bound = dict(zip(names, args))
        bound.update({k: kw[k] for k in names if k in kw})
        calls.append(bound)

    handle = block.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            for i, prompt in enumerate(prompts):
                pipe(prompt, generator=torch.Generator("cpu").manual_seed(seed + i), output_type="latent", **kwargs)
    finally:
        handle.remove()
    return [row for call in calls for row in _rows(call)]
