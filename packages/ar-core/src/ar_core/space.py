"""Disk space: check it before long work, and turn a write that ran out of it into a CheckpointError.

    check_free_space("out/model", 3 * 10**9, "the quantized model")   # CheckpointError when the disk has less
    try:
        write(...)
    except Exception as exc:
        if is_no_space(exc):
            raise no_space_error("out/model", 3 * 10**9) from exc
        raise

Libraries wrap the operating system's ENOSPC in their own exceptions (torch.save: RuntimeError with the OSError as
its context; safetensors: SafetensorError whose text ends in "(os error 28)"), so `is_no_space` looks through both.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from .errors import CheckpointError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded", "File too large", "os error 28",
                  "os error 122", "os error 27")


def is_no_space(exc: BaseException | None) -> bool:
    """True when `exc`, or an exception it was raised from or during, means the disk (or quota) is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if any(text in str(exc) for text in _NO_SPACE_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def existing_parent(path: str | Path) -> Path:
    """`path` itself when it exists, else its nearest existing parent directory."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: str | Path) -> int:
    """Bytes free for this user on the filesystem that holds (or will hold) `path`."""
    return shutil.disk_usage(existing_parent(path)).free


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 10**7 else f"{n} bytes"


def no_space_error(folder: str | Path, needed: int | None = None) -> CheckpointError:
    """The CheckpointError for a write into `folder` that ran out of space (naming the bytes needed when known)."""
    need = f"about {_gb(needed)} are needed and " if needed else ""
    return CheckpointError(f"writing into {str(folder)!r} ran out of disk space: {need}{_gb(free_bytes(folder))} "
                           "are free there; partial files were removed. Free space or choose a folder on another "
                           "disk (output_dir / --output_dir, work_dir), then rerun")


def check_free_space(folder: str | Path, needed: int, what: str) -> None:
    """Raise CheckpointError before any work when the filesystem of `folder` has less than `needed` bytes free."""
    free = free_bytes(folder)
    if free < needed:
        raise CheckpointError(f"not enough disk space for {what} in {str(folder)!r}: about {_gb(needed)} are needed, "
                              f"{_gb(free)} are free; free space or choose a folder on another disk "
                              "(output_dir / --output_dir, work_dir)")
