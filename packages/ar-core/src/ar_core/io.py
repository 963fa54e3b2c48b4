"""Atomic output directories and a sharded safetensors writer with an index.

    with atomic_output_dir("out/model", overwrite=False) as tmp:   # write everything into `tmp`
        save_sharded_safetensors(tensors, tmp, max_shard_size="2GB")
    # `out/model` now exists complete, or not at all

A directory is built in a temporary sibling (`.<name>.tmp-*`) and renamed into place only when the block ends
without an exception, so a crash never leaves a half-written directory under the final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import torch

from .errors import CheckpointError, field_error

SAFETENSORS_INDEX = "model.safetensors.index.json"
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


@contextmanager
def atomic_output_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of `path`; on success rename it to `path` (replacing it only if `overwrite`).

    Raises CheckpointError before any work when `path` exists and `overwrite` is False. On an exception the
    temporary directory is removed and `path` is left as it was.
    """
    final = Path(path).absolute()
    if final.exists() and not overwrite:
        raise field_error(CheckpointError, "output_dir", str(path),
                          "a path that does not exist yet (pass overwrite=True to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def parse_size(size: int | str) -> int:
    """Bytes in `size`: an int, or a string like '5GB', '500MiB', '1024'."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)?\s*", str(size).upper())
    if not m or float(m.group(1)) <= 0:
        raise field_error(CheckpointError, "max_shard_size", size, "a positive int of bytes or a string like '5GB'")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "B"])


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def plan_shards(tensors: Mapping[str, torch.Tensor], max_shard_size: int | str) -> list[list[str]]:
    """Split tensor names (in order) into shards of at most `max_shard_size` bytes (one tensor may exceed it)."""
    limit = parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    used = 0
    for name, t in tensors.items():
        size = _nbytes(t)
        if shards[-1] and used + size > limit:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def save_sharded_safetensors(tensors: Mapping[str, torch.Tensor], out_dir: str | Path,
                             max_shard_size: int | str = "5GB", metadata: dict[str, str] | None = None) -> list[Path]:
    """Write `tensors` as `model.safetensors`, or as `model-0000i-of-0000N.safetensors` shards plus
    `model.safetensors.index.json` when they exceed `max_shard_size`. Returns the files written."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", **(metadata or {})}
    shards = plan_shards(tensors, max_shard_size)
    if len(shards) == 1:
        names = ["model.safetensors"]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    written = []
    for fname, keys in zip(names, shards):
        save_file({k: tensors[k].detach().contiguous() for k in keys}, str(out / fname), metadata=meta)
        written.append(out / fname)
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(_nbytes(t) for t in tensors.values())},
                 "weight_map": {k: fname for fname, keys in zip(names, shards) for k in keys}}
        (out / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        written.append(out / SAFETENSORS_INDEX)
    return written
