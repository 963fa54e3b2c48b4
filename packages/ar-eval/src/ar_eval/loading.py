"""Loading a model and tokenizer for evaluation: 16-bit checkpoints, our quantized checkpoints, GGUF files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ar_core.errors import CheckpointError
from ar_core.remote_code import remote_code_guard


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


def load_model(path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
               trust_remote_code: bool = False):
    """A causal LM in eval mode, computing in `dtype`: our quantized checkpoints through `ar_kernels.load` (QuantLinear
    layers), GGUF files and 16-bit checkpoints through transformers. The model's own code runs only with
    `trust_remote_code=True`."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"model {str(p)!r} does not exist")
    if p.is_dir() and not (p / "config.json").is_file():
        raise CheckpointError(f"model directory {str(p)!r} has no config.json")
    from transformers import AutoModelForCausalLM

    trust = dict(trust_remote_code=trust_remote_code)
    with remote_code_guard(p, trust_remote_code):
        if p.suffix == ".gguf":
            model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=dtype, **trust)
        elif is_quantized_checkpoint(p):
            from ar_kernels import load

            model = load(p, device=device, dtype=dtype, **trust)
        else:
            from transformers import AutoConfig

            from ar_kernels.loading.auto import model_class

            model = model_class(AutoConfig.from_pretrained(p, **trust)).from_pretrained(p, dtype=dtype, **trust)
    return model.to(device).eval()


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """The tokenizer stored with a checkpoint directory or inside a GGUF file (its own code only with
    `trust_remote_code=True`)."""
    from transformers import AutoTokenizer

    p = Path(path)
    with remote_code_guard(p, trust_remote_code):
        if p.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name, trust_remote_code=trust_remote_code)
        return AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code)
