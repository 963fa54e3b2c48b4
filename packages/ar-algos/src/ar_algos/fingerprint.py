"""What a resumed run must match: the model's weights (hashed whole when small, else sampled), its source files,
and any other part of the run (`digest`).

    model_digest(model)         # ('full', '3f2a...') or ('sampled', '...'), see FULL_HASH_BYTES
    source_files_digest(path)   # size, mtime and safetensors header of every weight file of a model folder
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import torch

FULL_HASH_BYTES = 2**30  # weights up to 1 GiB are hashed whole (about a second); larger models are sampled
SAMPLES_PER_TENSOR = 4096  # evenly strided values of every tensor, first and last included
_HEADER_LIMIT = 100 * 2**20


def digest(*parts: Any) -> str:
    """sha256 (first 16 hex digits) of strings, bytes and tensors."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(str((tuple(p.shape), p.dtype)).encode())
            h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:16]


def _strided(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().reshape(-1)
    if flat.numel() <= SAMPLES_PER_TENSOR:
        return flat
    index = torch.linspace(0, flat.numel() - 1, SAMPLES_PER_TENSOR, device=flat.device).round().long()
    return flat[index]


def model_digest(model: torch.nn.Module) -> tuple[str, str]:
    """(method, hash) of the model's config and weights: 'full' hashes every byte of every parameter and buffer
    when they hold at most FULL_HASH_BYTES, 'sampled' hashes SAMPLES_PER_TENSOR strided values of each."""
    config = model.config.to_json_string() if hasattr(model, "config") else type(model).__name__
    tensors = [(n, t) for n, t in model.state_dict().items() if t.device.type != "meta"]
    full = sum(t.numel() * t.element_size() for _, t in tensors) <= FULL_HASH_BYTES
    parts: list[Any] = [config]
    for name, t in tensors:
        parts += [name, t if full else _strided(t)]
    return ("full" if full else "sampled"), digest(*parts)


def _header(path: Path) -> bytes:
    with path.open("rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        return f.read(size) if 0 < size <= _HEADER_LIMIT else head


def source_files_digest(folder: str | Path | None) -> str:
    """Hash of the size, mtime and (for safetensors) header of every weight file in a local model `folder`;
    'none' when the model did not come from one."""
    if folder is None or not Path(folder).is_dir():
        return "none"
    parts: list[Any] = []
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".gguf"):
            st = p.stat()
            parts += [p.name, st.st_size, st.st_mtime_ns]
            if p.suffix == ".safetensors":
                parts.append(_header(p))
    return digest(*parts) if parts else "none"
