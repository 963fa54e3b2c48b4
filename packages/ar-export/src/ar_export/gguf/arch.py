"""Architectures the GGUF writer knows: HF model_type -> GGUF arch, hyper-parameter keys and tensor renaming.

Tensor names come from gguf-py's TensorNameMap; on top of it this module applies what llama.cpp's converter does
to the weights: llama/mistral q/k rows are re-ordered from HF's half-split rotary layout to GGUF's interleaved
one, Gemma norm weights are stored as 1 + w, and fused MoE gate_up experts are split into gate and up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gguf
import torch

from ar_core.errors import CheckpointError, field_error


@dataclass(frozen=True)
class Arch:
    """How one HF model_type is written: GGUF arch name, q/k permutation, norm offset, extra hparams."""

    gguf_name: str
    permute_qk: bool = False
    norm_offset: float = 0.0
    key_length: bool = False  # write attention.key_length / value_length (head_dim)
    gemma: bool = False


ARCHES: dict[str, Arch] = {
    "llama": Arch("llama", permute_qk=True),
    "mistral": Arch("llama", permute_qk=True),
    "qwen2": Arch("qwen2"),
    "qwen3": Arch("qwen3", key_length=True),
    "qwen3_moe": Arch("qwen3moe", key_length=True),
    "gemma2": Arch("gemma2", norm_offset=1.0, key_length=True, gemma=True),
    "gemma3_text": Arch("gemma3", norm_offset=1.0, key_length=True, gemma=True),
    "phi3": Arch("phi3"),
}


def get_arch(config) -> Arch:
    """The Arch of a transformers config; CheckpointError names the supported model types."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHES:
        raise field_error(CheckpointError, "model_type", model_type, f"one of {sorted(ARCHES)} for GGUF export")
    return ARCHES[model_type]


def _gguf_arch(arch: Arch) -> gguf.MODEL_ARCH:
    return next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch.gguf_name)


def head_dim(config) -> int:
    """Attention head size (explicit head_dim or hidden / heads)."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_theta(config) -> float | None:
    """rope theta from either the old top-level field or transformers 5's rope_parameters."""
    theta = getattr(config, "rope_theta", None)
    params = getattr(config, "rope_parameters", None) or {}
    if theta is None and isinstance(params, dict):
        theta = params.get("rope_theta") or (params.get("full_attention") or {}).get("rope_theta")
    return theta


def n_experts(config) -> int:
    """Routed experts per MoE layer (0 for dense models)."""
    return int(getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None) or 0)


def write_hparams(w: gguf.GGUFWriter, config, arch: Arch) -> None:
    """Write the `{arch}.*` hyper-parameters llama.cpp and transformers read."""
    w.add_context_length(int(config.max_position_embeddings))
    w.add_embedding_length(int(config.hidden_size))
    w.add_block_count(int(config.num_hidden_layers))
    w.add_feed_forward_length(int(config.intermediate_size))
    w.add_head_count(int(config.num_attention_heads))
    w.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads))
    w.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    w.add_vocab_size(int(config.vocab_size))
    if (theta := rope_theta(config)) is not None:
        w.add_rope_freq_base(float(theta))
    if arch.permute_qk:
        w.add_rope_dimension_count(head_dim(config))
    if arch.key_length:
        w.add_key_length(head_dim(config))
        w.add_value_length(head_dim(config))
    if n_experts(config):
        w.add_expert_count(n_experts(config))
        w.add_expert_used_count(int(config.num_experts_per_tok))
        w.add_expert_feed_forward_length(int(config.moe_intermediate_size))
    if arch.gemma:
        if getattr(config, "sliding_window", None):
            w.add_sliding_window(int(config.sliding_window))
        if getattr(config, "attn_logit_softcapping", None):
            w.add_attn_logit_softcapping(float(config.attn_logit_softcapping))
        if getattr(config, "final_logit_softcapping", None):
            w.add_final_logit_softcapping(float(config.final_logit_softcapping))


def _qk_permutation(rows: int, n_head: int) -> torch.Tensor:
    """Row order taking HF's [head, half, pair] rotary layout to GGUF's [head, pair, half]."""
    return torch.arange(rows).reshape(n_head, 2, rows // n_head // 2).transpose(1, 2).reshape(-1)


@dataclass
class TensorSpec:
    """One GGUF tensor: its name, the HF module it comes from and how rows are re-ordered / offset."""

    gguf_name: str
    hf_name: str  # state_dict key
    module: str  # HF module name used for `quantized` / `imatrix` lookups
    tensor: torch.Tensor  # HF-layout float tensor (already sliced for split experts)
    row_order: torch.Tensor | None = None  # applied to dim -2 (rows) before writing
    offset: float = 0.0  # added before writing (Gemma norms)


def tensor_specs(model, arch: Arch) -> Iterator[TensorSpec]:
    """Every tensor of `model` with its GGUF name (tied lm_head and buffers skipped)."""
    config = model.config
    n_layers = int(config.num_hidden_layers)
    names = gguf.get_tensor_name_map(_gguf_arch(arch), n_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, t in model.state_dict().items():
        if tied and hf_name.startswith("lm_head."):
            continue
        stem, suffix = hf_name, ""
        if hf_name.endswith((".weight", ".bias")):
            stem, suffix = hf_name.rsplit(".", 1)
            suffix = "." + suffix
        if "rotary_emb" in stem:  # buffers, not weights
            continue
        if stem.endswith("mlp.experts.gate_up_proj"):
            half = t.shape[-2] // 2
            blk = names.get_name(stem.replace("gate_up_proj", "down_proj")).removesuffix("down_exps")
            yield TensorSpec(f"{blk}gate_exps.weight", hf_name, stem, t[..., :half, :])
            yield TensorSpec(f"{blk}up_exps.weight", hf_name, stem, t[..., half:, :])
            continue
        gname = names.get_name(stem)
        if gname is None:
            raise CheckpointError(f"tensor {hf_name!r} has no GGUF name in arch {arch.gguf_name!r}")
        gname += suffix or ".weight"
        order = None
        if arch.permute_qk and (gname.endswith("attn_q.weight") or gname.endswith("attn_k.weight")
                                or gname.endswith("attn_q.bias") or gname.endswith("attn_k.bias")):
            heads = config.num_attention_heads if ".attn_q." in gname else config.num_key_value_heads
            order = _qk_permutation(t.shape[0], heads)
        offset = arch.norm_offset if (arch.norm_offset and gname.endswith("norm.weight")) else 0.0
        yield TensorSpec(gname, hf_name, stem, t, order, offset)
