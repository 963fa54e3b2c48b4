"""Tiny random-weight causal LMs of every supported family, built offline from transformers config classes."""

from __future__ import annotations

import torch
import transformers as tf

_COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
_FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "qwen3_moe": ("Qwen3MoeConfig", {"head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2,
                                     "moe_intermediate_size": 32, "decoder_sparse_step": 1}),
    "mixtral": ("MixtralConfig", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "sliding_window": 8}),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 16, "sliding_window": 8}),
    "phi3": ("Phi3Config", {"pad_token_id": 0}),
    "opt": ("OPTConfig", {"ffn_dim": 128, "word_embed_proj_dim": 64, "num_key_value_heads": None,
                          "intermediate_size": None}),
    "gpt2": ("GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 256}),
}
FAMILIES = tuple(_FAMILIES)


def tiny_config(family: str, **overrides):
    """A small config of `family` (one of FAMILIES); `overrides` replace fields."""
    cls_name, extra = _FAMILIES[family]
    fields = {**_COMMON, **extra, **overrides}
    fields = {k: v for k, v in fields.items() if v is not None}
    return getattr(tf, cls_name)(**fields)


def tiny_model(family: str, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> torch.nn.Module:
    """A randomly initialised causal LM of `family` in eval mode (deterministic for a given seed)."""
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(tiny_config(family, **overrides), dtype=dtype)
    return model.eval()


def random_samples(n: int, seqlen: int, vocab: int = 128, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`n` calibration samples of random token ids in the format get_calibration_data returns."""
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (1, seqlen), generator=g),
             "attention_mask": torch.ones(1, seqlen, dtype=torch.long)} for _ in range(n)]
