"""Tiny offline fixtures for exporter tests: a random Llama built from a config and a BPE tokenizer trained in-process.

Needs `transformers` and `tokenizers` (imported lazily so that `ar_export` itself does not depend on them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_LLAMA = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=384, max_position_embeddings=128, tie_word_embeddings=False)
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"


def tiny_llama(seed: int = 0, **overrides: Any):
    """A float32 LlamaForCausalLM with random weights (2 layers, hidden 256, MLP 512, vocab 384) in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{**TINY_LLAMA, **overrides})
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # the default init is tiny (std 0.02); widen it so quantization errors show in logits
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.05)
    return model


def tiny_tokenizer():
    """A byte-level BPE fast tokenizer (about 300 tokens) trained on Python's own docs, with a chat template."""
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = [v for _, v in sorted(topics.items())][:40]
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tiny_model(path, seed: int = 0, **overrides: Any) -> Path:
    """Save `tiny_llama(seed, **overrides)` and `tiny_tokenizer()` into the folder `path` (a loadable Hugging Face
    model directory); returns it as a Path."""
    path = Path(path)
    tiny_llama(seed=seed, **overrides).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def calibration_texts(n: int = 8) -> list[str]:
    """`n` short English texts (Python docs) for calibration or logits checks."""
    from pydoc_data.topics import topics

    return [v[:400] for _, v in sorted(topics.items())[50:50 + n]]


def quantize_model(model, scheme, skip: tuple[str, ...] = ("lm_head",), overrides: dict | None = None) -> dict:
    """RTN-quantize every Linear of `model` except names containing an entry of `skip`; `overrides` maps a name
    substring to another scheme. Returns {module_name: QuantizedTensor}."""
    from ar_core.presets import parse_scheme
    from ar_core.quant import quantize

    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or any(s in name for s in skip):
            continue
        s = parse_scheme(scheme)
        for key, other in (overrides or {}).items():
            if key in name:
                s = parse_scheme(other)
        if not s.is_quantized:
            continue
        out[name] = quantize(mod.weight.detach().float(), s)
    return out


def dequantized_copy(model, quantized: dict):
    """A deep copy of `model` whose quantized Linear weights are replaced by their dequantized records."""
    import copy

    ref = copy.deepcopy(model)
    mods = dict(ref.named_modules())
    with torch.no_grad():
        for name, qt in quantized.items():
            w = mods[name].weight
            w.copy_(qt.dequantize(torch.float32).to(w.dtype))
    return ref


def workspace_gguf(folder, out, mix: str = "q4_k_m") -> Path:
    """The GGUF file the in-workspace writer makes of a checkpoint folder: `write_gguf` on a float32 transformers
    model built from the folder's config.json holding the folder's weights (quantized layers dequantized), with the
    folder's transformers tokenizer and the records a GGUF type can hold (what `convert_folder` compares against)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .gguf import read_folder, write_gguf
    from .gguf.folder import gguf_records

    view, records = read_folder(folder)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(folder)), dtype=torch.float32)
    missing, unexpected = model.load_state_dict(view.state_dict(), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"folder weights do not fit the model: missing {missing}, unexpected {unexpected}")
    return write_gguf(model, AutoTokenizer.from_pretrained(str(folder)), out, mix, gguf_records(records))
