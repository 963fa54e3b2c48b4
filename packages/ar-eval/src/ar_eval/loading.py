"""Loading a model and tokenizer for evaluation: 16-bit checkpoints, our quantized checkpoints, GGUF files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ar_core.errors import CheckpointError


def is_quantized_checkpoint(path: str | Path) -> bool:
    """True when `path` is a GGUF file or a directory whose config.json carries a quantization config."""
    p = Path(path)
    if p.suffix == ".gguf":
        return True
    cfg = p / "config.json"
    if not cfg.is_file():
        return False
    data = json.loads(cfg.read_text())
    return "quantization_config" in data or "quantization" in data


def load_model(path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """A causal LM in eval mode, computing in `dtype`: our quantized checkpoints through `ar_kernels.load` (QuantLinear
    layers), GGUF files and 16-bit checkpoints through transformers."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"model {str(p)!r} does not exist")
    if p.is_dir() and not (p / "config.json").is_file():
        raise CheckpointError(f"model directory {str(p)!r} has no config.json")
    from transformers import AutoModelForCausalLM

    if p.suffix == ".gguf":
        model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=dtype)
    elif is_quantized_checkpoint(p):
        from ar_kernels import load

        model = load(p, device=device, dtype=dtype)
    else:
        from transformers import AutoConfig

        from ar_kernels.loading.auto import model_class

        model = model_class(AutoConfig.from_pretrained(p)).from_pretrained(p, dtype=dtype)
    return model.to(device).eval()


def load_tokenizer(path: str | Path):
    """The tokenizer stored with a checkpoint directory or inside a GGUF file."""
    from transformers import AutoTokenizer

    p = Path(path)
    if p.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    return AutoTokenizer.from_pretrained(p)
