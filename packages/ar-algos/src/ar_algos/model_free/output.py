"""Write the model-free checkpoint: stream the workers' packed tensors into the final shards, then the config and
the side files (tokenizer, generation config, chat template, custom code) copied from the source directory."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import torch

from ar_core.io import save_sharded_safetensors

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json", ".msgpack", ".h5")
NOT_COPIED = ("config.json", "quantization_config.json")


class LazyTensors(Mapping):
    """name -> tensor, read from the workers' part files only when asked for (so one shard is held at a time)."""

    def __init__(self, where: dict[str, str]):
        self.where = where
        self._files: dict[str, Any] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        path = self.where[name]
        if path not in self._files:
            self._files[path] = safe_open(path, framework="pt")
        return self._files[path].get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def write_tensors(where: dict[str, str], out: Path, max_shard_size: int | str) -> None:
    """Write the tensors named in `where` (in its order) as the output's safetensors shards and index."""
    save_sharded_safetensors(LazyTensors(where), out, max_shard_size)


def source_config(path: Path, raw: dict) -> dict:
    """The config dict as transformers writes it (falls back to the raw config.json for unknown architectures)."""
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path)).to_dict()
    except (ValueError, KeyError, OSError):
        return dict(raw)


def copy_side_files(src: Path, out: Path) -> list[str]:
    """Copy every non-weight file of `src` (tokenizer, generation config, chat template, *.py); returns names."""
    copied = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.name in NOT_COPIED or p.name.endswith(WEIGHT_SUFFIXES):
            continue
        shutil.copy2(p, out / p.name)
        copied.append(p.name)
    return copied
