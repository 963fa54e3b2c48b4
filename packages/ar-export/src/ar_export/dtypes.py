"""The dtype a checkpoint keeps its unquantized float tensors in (embeddings, lm_head, norms, biases).

A model is often loaded in float32 for tuning although its source checkpoint is bf16 or fp16; saving the 16-bit
tensors in float32 would then make the quantized checkpoint larger than its source. Like the reference, whose layout
keeps the model's dtype, the saved dtype is the source checkpoint's 16-bit dtype when the model runs in float32.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import torch

HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16, "BF16": torch.bfloat16, "F16": torch.float16}
FLOAT_CODES = {"BF16", "F16", "F32", "F64"}


def model_dtype(model: Any) -> torch.dtype:
    """dtype of the model's first floating-point parameter (float16 when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float16


def source_dtype(source_dir: str | Path | None) -> torch.dtype | None:
    """The 16-bit dtype of the source checkpoint in `source_dir`: config.json `dtype` / `torch_dtype`, else the most
    common float dtype (by bytes) of the `.weight` tensors in its safetensors headers; None if unknown or not 16-bit."""
    if source_dir is None or not Path(source_dir).is_dir():
        return None
    src = Path(source_dir)
    config = src / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text())
        named = cfg.get("dtype") or cfg.get("torch_dtype") or (cfg.get("text_config") or {}).get("dtype")
        if isinstance(named, str):
            return HALF.get(named.removeprefix("torch."))
    counts: Counter = Counter()
    for f in sorted(src.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, t in header.items():  # float `.weight` tensors only: scales of packed layers are not the model's
            if name.endswith(".weight") and t["dtype"] in FLOAT_CODES:
                counts[t["dtype"]] += t["data_offsets"][1] - t["data_offsets"][0]
    return HALF.get(counts.most_common(1)[0][0]) if counts else None


def save_dtype(model: Any, source_dir: str | Path | None) -> torch.dtype:
    """dtype of the saved float tensors: the source's 16-bit dtype when the model runs in float32, else the
    model's own."""
    own = model_dtype(model)
    if own == torch.float32:
        return source_dtype(source_dir) or own
    return own
