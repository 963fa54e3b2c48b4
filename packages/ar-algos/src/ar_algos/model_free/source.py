"""Read a safetensors checkpoint directory without loading weights: config.json, shard files and tensor shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ar_core.errors import CheckpointError, field_error
from ar_core.io import open_safetensors

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class TensorMeta:
    """Where one stored tensor lives and what it looks like (safetensors dtype string, shape)."""

    name: str
    shard: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor as stored."""
        n = DTYPE_BYTES.get(self.dtype, 4)
        for d in self.shape:
            n *= d
        return n


@dataclass
class Checkpoint:
    """A model directory: its config dict, shard file names (in order) and every tensor's metadata (index order)."""

    path: Path
    config: dict
    shards: list[str]
    tensors: dict[str, TensorMeta]

    def shard_tensors(self, shard: str) -> list[TensorMeta]:
        """Tensors stored in `shard`."""
        return [t for t in self.tensors.values() if t.shard == shard]

    def shard_bytes(self, shard: str) -> int:
        """Bytes of the tensors stored in `shard`."""
        return sum(t.nbytes for t in self.shard_tensors(shard))


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Scan a directory holding config.json and model.safetensors (or shards plus their index)."""
    root = Path(path)
    if not (root / "config.json").is_file():
        raise field_error(CheckpointError, "model", str(path), "a local directory holding config.json and "
                          "safetensors weights (model-free mode reads the files directly)")
    config = json.loads((root / "config.json").read_text())
    if (root / INDEX).is_file():
        weight_map = json.loads((root / INDEX).read_text())["weight_map"]
        shards = list(dict.fromkeys(weight_map.values()))
    elif (root / SINGLE).is_file():
        shards = [SINGLE]
    else:
        raise field_error(CheckpointError, "model", str(path), f"a directory with {SINGLE} or {INDEX}")
    tensors: dict[str, TensorMeta] = {}
    for shard in shards:
        file = root / shard
        if not file.is_file():
            raise field_error(CheckpointError, "shard", str(file), "a shard listed in the index that exists")
        with open_safetensors(file) as f:
            for name in f.keys():
                s = f.get_slice(name)
                tensors[name] = TensorMeta(name, shard, s.get_dtype(), tuple(s.get_shape()))
    return Checkpoint(root, config, shards, tensors)
