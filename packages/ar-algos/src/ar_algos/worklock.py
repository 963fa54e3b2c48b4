"""One run per work directory: an exclusive `fcntl.flock` on `<work_dir>/lock`, which records who holds it.

    lock = WorkLock.acquire("out/model.work")   # CheckpointError naming the holder (pid, host, start) when taken
    ...
    lock.release(cleanup=True)                  # and remove the folder when it made it and it is otherwise empty

The kernel drops a flock when its process dies, so a lock left by a killed run is simply taken over; the file's
text (pid, host, start time) only serves the message to a second run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ar_core.errors import CheckpointError

LOCK_NAME = "lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its lock file names none)"


class WorkLock:
    """An exclusive lock on a work directory, held by this process until `release`."""

    def __init__(self, folder: Path, fd: int, made_folder: bool):
        self.folder, self.fd, self.made_folder = folder, fd, made_folder

    @classmethod
    def acquire(cls, folder: str | Path) -> "WorkLock":
        """Create `folder` if needed and lock it; CheckpointError saying who holds it when another run does."""
        folder = Path(folder)
        made = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CheckpointError(
                    f"work_dir={str(folder)!r} is in use by another ar run ({_holder(path)}); wait for it to finish "
                    "or stop it, or give this run another output_dir (--output_dir) or work_dir") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file that its last holder unlinked while we waited for it
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        return cls(folder, fd, made)

    def release(self, cleanup: bool = False) -> None:
        """Unlock; with `cleanup` also delete the lock file, and the folder when this lock made it and it is empty."""
        if self.fd is None:
            return
        if cleanup:
            (self.folder / LOCK_NAME).unlink(missing_ok=True)
            if self.made_folder and self.folder.is_dir() and not any(self.folder.iterdir()):
                self.folder.rmdir()
        os.close(self.fd)
        self.fd = None
