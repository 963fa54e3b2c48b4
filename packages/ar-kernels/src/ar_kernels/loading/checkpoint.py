"""Lazy access to the tensors of a safetensors checkpoint (one file or a sharded index)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from ar_core.errors import CheckpointError
from ar_core.io import open_safetensors


class CheckpointReader:
    """Maps tensor names to their shard and reads tensors on demand."""

    def __init__(self, path: str | Path):
        path = Path(path)
        index = path / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in path.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"checkpoint {str(path)!r} holds no *.safetensors file")
        self._handles = {}
        self._where: dict[str, str] = {}
        self._by_prefix: dict[str, list[str]] = {}
        for f in files:
            if not (path / f).exists():
                raise CheckpointError(f"checkpoint {str(path)!r}: shard {f!r} named by the index is missing")
            handle = open_safetensors(path / f)
            self._handles[f] = handle
            for key in handle.keys():
                self._where[key] = f
                self._by_prefix.setdefault(key.rpartition(".")[0], []).append(key)

    def keys(self) -> list[str]:
        """Every tensor name in the checkpoint."""
        return list(self._where)

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor."""
        return self._handles[self._where[name]].get_tensor(name)

    def local(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under `prefix.` keyed by their local names (e.g. "qweight")."""
        return {k.rpartition(".")[2]: self.get(k) for k in self._by_prefix.get(prefix, [])}
