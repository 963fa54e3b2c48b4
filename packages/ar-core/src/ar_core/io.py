"""Atomic output directories and a sharded safetensors writer with an index.

    with atomic_output_dir("out/model", overwrite=False) as tmp:   # write everything into `tmp`
        save_sharded_safetensors(tensors, tmp, max_shard_size="2GB")
    # `out/model` now exists complete, or not at all

A directory is built in a temporary sibling (`.<name>.tmp-*`) and renamed into place only when the block ends
without an exception, so a crash never leaves a half-written directory under the final name (a sibling left by a
killed process is removed by the next run writing that name). Its folders and files get the modes a plain mkdir and
open would give under the process's umask (as transformers' save_pretrained does), not mkdtemp's private 0700.
Replacing an existing directory (`overwrite`) replaces the files ar writes and keeps everything else it held.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import Iterator, Mapping

import torch

from .errors import CheckpointError, field_error
from .space import free_bytes, is_no_space

SAFETENSORS_INDEX = "model.safetensors.index.json"
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
# names of an old output that a new one replaces even where it does not write them (stale weights and configs)
_REPLACED_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".npz", ".index.json")
_REPLACED_NAMES = ("config.json", "quantization_config.json", "generation_config.json")
_NO_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)


def check_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """The absolute `path` when a new output directory can be written there; CheckpointError naming the problem
    (it exists and `overwrite` is False, a parent is a file, the nearest existing parent is not writable)."""
    final = Path(path).absolute()
    if final.exists() and not overwrite:
        raise field_error(CheckpointError, "output_dir", str(path),
                          "a path that does not exist yet (pass overwrite=True, or --overwrite, to replace it)")
    if final.exists() and not final.is_dir():
        raise field_error(CheckpointError, "output_dir", str(path), "a directory (overwrite replaces the files of an "
                          "output directory), but it is a file")
    parent = final.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise field_error(CheckpointError, "output_dir", str(path),
                          f"a path under a directory, but {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise field_error(CheckpointError, "output_dir", str(path),
                          f"a path you can write, but directory {str(parent)!r} is not writable")
    return final


def _write_error(exc: BaseException, path: str | Path, needed: int | None = None) -> CheckpointError | None:
    """A CheckpointError saying that writing `path` ran out of space (with the bytes `needed` when known) or was
    refused, or None for other errors."""
    if is_no_space(exc):
        need = f"about {needed} bytes needed, " if needed else ""
        why = f"ran out of disk space ({need}{free_bytes(path)} bytes free there)"
    elif isinstance(exc, OSError) and exc.errno in _NO_WRITE:
        why = "was refused (not writable)"
    else:
        return None
    return CheckpointError(f"writing output_dir={str(path)!r} {why}; nothing was left under that name. "
                           "Free space or choose another output_dir, then rerun (a work directory resumes)")


@contextmanager
def atomic_output_dir(path: str | Path, overwrite: bool = False, needed: int | None = None) -> Iterator[Path]:
    """Yield an empty temporary sibling of `path`; on success rename it to `path` (replacing it only if `overwrite`).
    `needed`: the bytes the output will take, when known, named if the disk fills up.

    Raises CheckpointError before any work when `path` cannot be written (see `check_output_dir`). On an exception
    the temporary directory is removed and `path` is left as it was; running out of space or permission becomes a
    CheckpointError saying so.
    """
    final = check_output_dir(path, overwrite)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{glob_escape(final.name)}.tmp-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as exc:
        raise (_write_error(exc, path) or exc) from exc
    try:
        yield tmp
        honour_umask(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            keep_user_entries(old / final.name, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        clear = _write_error(exc, path, needed) if isinstance(exc, Exception) else None
        if clear is not None:
            raise clear from exc
        raise


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(root: Path) -> None:
    """Give `root` and everything under it the modes mkdir and open give under the umask: folders 0o777, files
    0o666 (plus the execute bits they had), less the umask."""
    mask = current_umask()
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            p = os.path.join(folder, name)
            if not os.path.islink(p):
                os.chmod(p, (0o666 | (os.stat(p).st_mode & 0o111)) & ~mask)


def keep_user_entries(old: Path, new: Path) -> None:
    """Move into `new` every entry of the replaced directory `old` that `new` lacks and that is not a weight or
    config file ar writes (a user's notes or data survive --overwrite); folders present in both are merged alike."""
    for entry in old.iterdir():
        target = new / entry.name
        if target.exists() or target.is_symlink():
            if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
                keep_user_entries(entry, target)
        elif entry.name not in _REPLACED_NAMES and not entry.name.endswith(_REPLACED_SUFFIXES):
            os.replace(entry, target)


def open_safetensors(path: str | Path):
    """`safetensors.safe_open(path, framework="pt")`; CheckpointError naming the file when it is missing, truncated
    or corrupt (its header or length does not check out)."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise CheckpointError(f"safetensors file {str(path)!r} is missing; re-download or re-save the checkpoint")
    try:
        return safe_open(str(path), framework="pt")
    except SafetensorError as exc:
        raise CheckpointError(f"safetensors file {str(path)!r} is truncated or corrupt ({exc}); re-download or "
                              "re-save the checkpoint") from exc


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
    names = shard_file_names(len(shards))
    written = []
    for fname, keys in zip(names, shards):
        save_file({k: tensors[k].detach().contiguous() for k in keys}, str(out / fname), metadata=meta)
        written.append(out / fname)
    index = write_shard_index(out, names, shards, sum(_nbytes(t) for t in tensors.values()))
    return written + ([index] if index else [])


def shard_file_names(n: int) -> list[str]:
    """The safetensors file names of an output in `n` shards (`model.safetensors` when n is 1)."""
    return ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def write_shard_index(out: Path, names: list[str], shards: list[list[str]], total_size: int) -> Path | None:
    """Write `model.safetensors.index.json` for a sharded output (nothing for one file); returns its path or None."""
    if len(shards) == 1:
        return None
    index = {"metadata": {"total_size": total_size},
             "weight_map": {k: fname for fname, keys in zip(names, shards) for k in keys}}
    (out / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return out / SAFETENSORS_INDEX
