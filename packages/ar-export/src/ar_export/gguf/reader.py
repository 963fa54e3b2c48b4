"""`read_tensors`: the tensors of any GGUF file (ours or llama.cpp's) as GGUFTensor records, so that
`dequantized_state_dict` turns them back into HF-named float weights for evaluation."""

from __future__ import annotations

import os

import gguf
import numpy as np

from ar_core.errors import CheckpointError, field_error
from ar_core.pack.gguf import CODECS

from .writer import GGUFTensor

READABLE = ("f32", "f16", "bf16", *CODECS)


def read_tensors(path: str | os.PathLike) -> list[GGUFTensor]:
    """Every tensor of the GGUF file at `path` (name, ggml type, raw bytes, logical shape); module names are empty.
    Raises CheckpointError for a ggml type ar_core cannot dequantize (e.g. i-quants)."""
    out = []
    for t in gguf.GGUFReader(path).tensors:
        qtype = t.tensor_type.name.lower()
        if qtype not in READABLE:
            raise field_error(CheckpointError, f"type of tensor {t.name!r} in {os.fspath(path)!r}", qtype,
                              f"one of {', '.join(READABLE)}")
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists ne0 (the row length) first
        out.append(GGUFTensor(t.name, qtype, np.asarray(t.data), shape, ""))
    return out
