"""Tiny random FLUX and SD3 pipelines built from configs (no download): for tests, examples and the user guide.

Like diffusers' own pipeline tests, every component is built from a small config: a 1-channel (FLUX) or 4-channel
(SD3) one-level VAE, two-layer CLIP and T5 text encoders sharing ar_mllm's word-level tokenizer (16 tokens), and a
denoiser of width 64 with two blocks per list. Images are 16 x 16 pixels; pass `max_sequence_length=16`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TOKENS = 16  # tokenizer.model_max_length of the CLIP towers; use it as max_sequence_length for T5 too
FAMILIES = ("flux", "sd3")


def _tokenizer():
    from ..tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.model_max_length = TOKENS
    return tok


def _clip(with_projection: bool):
    import transformers as tf

    cfg = tf.CLIPTextConfig(vocab_size=256, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                            num_hidden_layers=2, projection_dim=32, max_position_embeddings=TOKENS,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return (tf.CLIPTextModelWithProjection if with_projection else tf.CLIPTextModel)(cfg).eval()


def _t5():
    import transformers as tf

    cfg = tf.T5Config(vocab_size=256, d_model=64, d_kv=16, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=2)
    return tf.T5EncoderModel(cfg).eval()


def _vae(latent_channels: int, **extra: Any):
    from diffusers import AutoencoderKL

    return AutoencoderKL(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8,), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=1, **extra).eval()


def tiny_pipeline(family: str, seed: int = 0):
    """A random-weight diffusers pipeline of `family` ("flux": FluxPipeline, "sd3": StableDiffusion3Pipeline)."""
    import diffusers as df

    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not allowed: one of {', '.join(FAMILIES)}")
    torch.manual_seed(seed)
    if family == "flux":
        transformer = df.FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                                                attention_head_dim=16, num_attention_heads=4, joint_attention_dim=64,
                                                pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
        return df.FluxPipeline(scheduler=df.FlowMatchEulerDiscreteScheduler(), transformer=transformer.eval(),
                               vae=_vae(1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                                        scaling_factor=1.5035),
                               text_encoder=_clip(False), tokenizer=_tokenizer(), text_encoder_2=_t5(),
                               tokenizer_2=_tokenizer())
    transformer = df.SD3Transformer2DModel(sample_size=16, patch_size=1, in_channels=4, num_layers=2,
                                           attention_head_dim=16, num_attention_heads=4, caption_projection_dim=64,
                                           joint_attention_dim=64, pooled_projection_dim=64, out_channels=4)
    return df.StableDiffusion3Pipeline(scheduler=df.FlowMatchEulerDiscreteScheduler(), transformer=transformer.eval(),
                                       vae=_vae(4, shift_factor=0.0609, scaling_factor=1.5035),
                                       text_encoder=_clip(True), tokenizer=_tokenizer(), text_encoder_2=_clip(True),
                                       tokenizer_2=_tokenizer(), text_encoder_3=_t5(), tokenizer_3=_tokenizer())


def save_tiny_pipeline(family: str, path: str | Path, seed: int = 0) -> Path:
    """Build `tiny_pipeline(family, seed)` and save it as a pipeline directory (model_index.json + components)."""
    tiny_pipeline(family, seed).save_pretrained(str(path))
    return Path(path)
