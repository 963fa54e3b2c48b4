"""Tokenizer metadata (tokenizer.ggml.*) from a Hugging Face fast tokenizer.

Byte-level BPE tokenizers are written as llama.cpp's "gpt2" model (tokens + merges). SentencePiece-style
tokenizers (Metaspace "▁" pieces, byte fallback, BPE or Unigram) are written as the "llama" model with scores
(Unigram log-probs; for BPE, minus the token id so earlier merges win) plus the merges, which transformers uses
when present. Special added tokens are CONTROL, other added tokens USER_DEFINED, "<0xNN>" pieces BYTE.
"""

from __future__ import annotations

import json
import re

import gguf

from ar_core.errors import CheckpointError

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
# GGUF pre-tokenizer names llama.cpp recognises, by HF model_type, for byte-level BPE vocabularies.
PRE_TOKENIZERS = {"qwen2": "qwen2", "qwen3": "qwen2", "qwen3_moe": "qwen2", "llama": "smollm"}


def _backend_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise CheckpointError(f"tokenizer {type(tokenizer).__name__} has no fast (tokenizers) backend for GGUF")
    return json.loads(backend.to_str())


def _is_byte_level(spec: dict) -> bool:
    text = json.dumps(spec.get("pre_tokenizer")) + json.dumps(spec.get("decoder"))
    return '"ByteLevel"' in text


def _merges(model: dict) -> list[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]


def write_tokenizer(w: gguf.GGUFWriter, tokenizer, vocab_size: int, model_type: str) -> None:
    """Write tokens, scores, types, merges, special ids and the chat template for `tokenizer` (a fast tokenizer, or
    an object with its own `write_vocab(w, vocab_size)` such as ar_export.gguf.vocab.SentencePieceFolder)."""
    if hasattr(tokenizer, "write_vocab"):
        tokenizer.write_vocab(w, vocab_size)
        return
    spec = _backend_json(tokenizer)
    model = spec["model"]
    vocab = tokenizer.get_vocab()
    size = max(vocab_size, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for tok, idx in vocab.items():
        tokens[idx] = tok
        types[idx] = gguf.TokenType.BYTE if _BYTE_PIECE.match(tok) else gguf.TokenType.NORMAL
    for added in spec.get("added_tokens", []):
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None:
        types[unk] = gguf.TokenType.UNKNOWN
    if _is_byte_level(spec):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(PRE_TOKENIZERS.get(model_type, "default"))
    else:
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        if model.get("type") == "Unigram":
            scores = [0.0] * size
            for i, (_, score) in enumerate(model["vocab"]):
                scores[i] = float(score)
        else:
            scores = [-float(i) for i in range(size)]
        w.add_token_scores(scores)
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    if model.get("type") == "BPE":
        w.add_token_merges(_merges(model))
    write_special_ids(w, tokenizer)
    for attr, add in (("add_bos_token", w.add_add_bos_token), ("add_eos_token", w.add_add_eos_token)):
        if isinstance(flag := getattr(tokenizer, attr, None), bool):
            add(flag)
    if isinstance(template := getattr(tokenizer, "chat_template", None), str):
        w.add_chat_template(template)


def write_special_ids(w: gguf.GGUFWriter, source) -> None:
    """bos/eos/unk/pad ids from a tokenizer or, without one, from the model config (single int ids only)."""
    for attr, add in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                      ("unk_token_id", w.add_unk_token_id), ("pad_token_id", w.add_pad_token_id)):
        if isinstance(tid := getattr(source, attr, None), int):
            add(tid)
