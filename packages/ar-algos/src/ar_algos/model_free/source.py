"""Read a safetensors checkpoint directory without loading weights (config.json, shard files, each tensor's dtype,
shape and byte range), and read or append one tensor's bytes with plain file I/O (no memory map, so the pages read
count in the page cache, not in the process's resident memory)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ar_core.errors import ArError, CheckpointError, field_error
from ar_core.io import open_safetensors

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
                **{n: getattr(torch, a) for n, a in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"))
                   if hasattr(torch, a)}}
ST_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}


@dataclass(frozen=True)
class TensorMeta:
    """Where one stored tensor lives (`shard`: the file, named within its checkpoint or as a path; `start`, `end`:
    its bytes in that file) and what it looks like (safetensors dtype string, shape)."""

    name: str
    shard: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor as stored."""
        return self.end - self.start


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
        with open_safetensors(file) as f:  # checks the header and the file length
            names = list(f.keys())
        stored = read_header(file, shard)
        tensors.update((name, stored[name]) for name in names)
    return Checkpoint(root, config, shards, tensors)


def read_header(path: str | Path, shard: str | None = None) -> dict[str, TensorMeta]:
    """Every tensor of the safetensors file `path` (labelled `shard`, default the path) from its header alone."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {name: TensorMeta(name, shard or str(path), info["dtype"], tuple(info["shape"]),
                             8 + n + info["data_offsets"][0], 8 + n + info["data_offsets"][1])
            for name, info in header.items() if name != "__metadata__"}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of safetensors dtype `name`; ArError for one model-free mode cannot read or write."""
    if name not in TORCH_DTYPES:
        raise field_error(ArError, "tensor dtype", name, f"one of {sorted(TORCH_DTYPES)} in model-free mode")
    return TORCH_DTYPES[name]


def _bytes_of(t: torch.Tensor) -> memoryview:
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


class TensorReader:
    """Reads tensors from the open binary file `f` into one reused byte buffer (grown to the largest tensor): one
    allocation for all of them instead of fresh pages, faulted in and zeroed by the kernel, for every tensor."""

    def __init__(self, f):
        self.f = f
        self.buffer = torch.empty(0, dtype=torch.uint8)

    def read(self, meta: TensorMeta) -> torch.Tensor:
        """The tensor `meta` (of the file `meta.shard`), a view of the buffer: valid until the next `read`."""
        dtype = torch_dtype(meta.dtype)
        if self.buffer.numel() < meta.nbytes:
            self.buffer = torch.empty(meta.nbytes, dtype=torch.uint8)
        raw = self.buffer[:meta.nbytes]
        view, done = memoryview(raw.numpy()), 0
        self.f.seek(meta.start)
        while done < meta.nbytes:
            n = self.f.readinto(view[done:])
            if not n:
                raise CheckpointError(f"file {meta.shard!r} ends inside tensor {meta.name!r}; it is truncated")
            done += n
        return raw.view(dtype).view(meta.shape)


def append_tensor(f, name: str, t: torch.Tensor, path: str) -> TensorMeta:
    """Write the bytes of the contiguous tensor `t` at the end of the open binary file `f` (the file `path`)."""
    if t.dtype not in ST_NAMES:
        raise field_error(ArError, f"dtype of tensor {name!r}", str(t.dtype), f"one of {sorted(map(str, ST_NAMES))}")
    start = f.tell()
    f.write(_bytes_of(t))
    return TensorMeta(name, path, ST_NAMES[t.dtype], tuple(t.shape), start, f.tell())
