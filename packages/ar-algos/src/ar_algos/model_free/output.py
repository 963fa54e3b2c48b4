"""Write the model-free checkpoint: copy the workers' packed tensors from their part files into the final shards in
bounded memory, then the config and the side files (tokenizer, generation config, chat template, custom code)
copied from the source directory.

A final shard is written the way `ar_core.io.save_sharded_safetensors` (safetensors' `save_file`) would write the
same tensors, byte for byte: the same split into shards, file names and index, and in each file the same header
(tensors sorted by dtype then name, as the library sorts them) followed by each tensor's bytes, copied from its part
file by the kernel (`os.copy_file_range`) or, where it cannot, through one fixed-size buffer, so no tensor is ever
held whole.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from contextlib import ExitStack
from pathlib import Path

import torch

from ar_core.errors import CheckpointError
from ar_core.io import plan_shards, shard_file_names, write_shard_index

from .source import TensorMeta, torch_dtype

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json", ".msgpack", ".h5")
NOT_COPIED = ("config.json", "quantization_config.json")
CHUNK_BYTES = 8 * 2**20
METADATA = {"format": "pt"}


def data_order(tensors: dict[str, TensorMeta]) -> list[str]:
    """Names in the order safetensors lays out their data (by dtype, then name), asked of the library itself by
    serializing empty tensors with the same names and dtypes."""
    from safetensors.torch import save

    probe = save({n: torch.empty(0, dtype=torch_dtype(t.dtype)) for n, t in tensors.items()})
    header = json.loads(probe[8:8 + struct.unpack("<Q", probe[:8])[0]])
    return [n for n in header if n != "__metadata__"]


def safetensors_header(tensors: dict[str, TensorMeta]) -> tuple[bytes, list[str]]:
    """The leading bytes `save_file(tensors, metadata={"format": "pt"})` writes (length, JSON header padded with
    spaces to a multiple of 8) and the order of the data that follows."""
    order = data_order(tensors)
    entries: dict = {"__metadata__": METADATA}
    offset = 0
    for name in order:
        t = tensors[name]
        entries[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, order


def _copy(src, dst, t: TensorMeta, buf: memoryview) -> None:
    src.seek(t.start)
    left = t.nbytes
    while left:
        n = src.readinto(buf[:min(left, len(buf))])
        if not n:
            raise CheckpointError(f"model-free part file {t.shard!r} is truncated (worker killed or disk full?)")
        dst.write(buf[:n])
        left -= n


def _copy_in_kernel(src, dst, t: TensorMeta) -> bool:
    """Copy the tensor's bytes with os.copy_file_range (no pass through this process); False where the system
    offers no such copy between these files (the caller then copies through its buffer)."""
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        return False
    done = 0
    try:
        while done < t.nbytes:
            n = copy(src.fileno(), dst.fileno(), t.nbytes - done, t.start + done)
            if not n:
                raise CheckpointError(f"model-free part file {t.shard!r} is truncated (worker killed or disk full?)")
            done += n
    except OSError:
        if done:
            raise
        return False
    return True


def write_shard(tensors: dict[str, TensorMeta], path: Path, buf: memoryview) -> None:
    """Write `tensors` as one safetensors file at `path`, copying their bytes from the part files in the kernel
    where it can (`_copy_in_kernel`), else through `buf`."""
    head, order = safetensors_header(tensors)
    with ExitStack() as stack, open(path, "wb") as dst:
        files = {p: stack.enter_context(open(p, "rb")) for p in dict.fromkeys(t.shard for t in tensors.values())}
        dst.write(head)
        dst.flush()
        for name in order:
            if not _copy_in_kernel(files[tensors[name].shard], dst, tensors[name]):
                _copy(files[tensors[name].shard], dst, tensors[name], buf)


def write_tensors(tensors: dict[str, TensorMeta], out: Path, max_shard_size: int | str) -> int:
    """Write `tensors` (name -> where its bytes lie in a part file, in output order) as the output's safetensors
    shards and index, the same bytes `save_sharded_safetensors` writes; returns the bytes of the copy buffer (all
    the tensor data held at once)."""
    # plan_shards reads only sizes: a meta byte tensor per name stands in for each tensor
    shards = plan_shards({n: torch.empty(t.nbytes, dtype=torch.uint8, device="meta") for n, t in tensors.items()},
                         max_shard_size)
    names = shard_file_names(len(shards))
    buf = memoryview(bytearray(max(min(CHUNK_BYTES, max((t.nbytes for t in tensors.values()), default=0)), 1)))
    for fname, keys in zip(names, shards):
        write_shard({k: tensors[k] for k in keys}, out / fname, buf)
    write_shard_index(out, names, shards, sum(t.nbytes for t in tensors.values()))
    return len(buf)


def copy_side_files(src: Path, out: Path) -> list[str]:
    """Copy every non-weight file of `src` (tokenizer, generation config, chat template, *.py); returns names."""
    copied = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.name in NOT_COPIED or p.name.endswith(WEIGHT_SUFFIXES):
            continue
        shutil.copy2(p, out / p.name)
        copied.append(p.name)
    return copied
