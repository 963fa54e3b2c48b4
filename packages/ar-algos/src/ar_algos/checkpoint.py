"""Block-granular resume: a work directory holding every finished block's records and the next block's inputs.

Layout: run.json ({"ar_work_dir": 2, "fingerprint": {...}, "done": k, "made_folder": ...}: the marker that this is
ar's folder, with the run's fingerprint), lock (see `ar_algos.worklock`: one run at a time), block_0000.pt ...
(records of each finished block, as plain dicts) and chain_<k-1>.pt (the hidden states entering block k). Each file
is written to a temporary name and renamed; run.json is renamed last, so a kill at any point leaves a consistent
state of k finished blocks. ar only ever deletes the files it names so (never a folder's other entries), and the
folder itself only when it made it and nothing else is left in it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ar_core.errors import CheckpointError
from ar_core.qtensor import QuantizedTensor
from ar_core.space import is_no_space, no_space_error

from .records import record_from_state, record_state
from .worklock import LOCK_NAME, WorkLock

MARKER = 2  # run.json's "ar_work_dir" value
OWN_FILES = re.compile(r"^(run\.json|block_\d{4,}\.pt|chain_\d{4,}\.pt|teacher\.pt|e2e\.pt)(\.tmp)?$")


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    return 0


def _save(obj: Any, path: Path) -> None:
    """Write `obj` to `path` through a temporary name; a full disk becomes a CheckpointError, the partial file gone."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.suffix == ".json":
            tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
        else:
            with tmp.open("wb") as f:  # a file object: torch then keeps the OSError as the failure's context
                torch.save(obj, f)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if is_no_space(exc):
            raise no_space_error(path.parent, _tensor_bytes(obj) or None) from exc
        raise


def read_state(path: Path) -> dict | None:
    """The parsed run.json of work directory `path`; None when there is none; CheckpointError when it is not ar's."""
    state_file = path / "run.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = None
    ok = isinstance(state, dict) and state.get("ar_work_dir") == MARKER and isinstance(state.get("fingerprint"), dict)
    if not ok or not isinstance(state.get("done"), int):
        raise CheckpointError(f"work_dir={str(path)!r} holds a run.json that ar did not write (or an older ar "
                              "version's); give a new or empty work_dir, or delete that folder yourself")
    return state


def check_work_dir(path: str | Path) -> None:
    """CheckpointError when `path` is a file, or a non-empty folder that is not one of ar's work directories."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"work_dir={str(path)!r} is a file; give a new or empty directory")
    state = read_state(path)
    others = [p.name for p in path.iterdir() if p.name != LOCK_NAME] if path.is_dir() else []
    if state is None and others:
        raise CheckpointError(f"work_dir={str(path)!r} exists and is not a work directory of ar (no run.json); "
                              "give an empty or new directory")


class WorkDir:
    """A resumable run's work directory, locked for this run (see `ar_algos.worklock`).

    With `resume=True` an existing directory is continued when its fingerprint equals `fingerprint`, and refused
    (CheckpointError naming the differing fields) otherwise; with `resume=False` ar's files in it are deleted and the
    run starts fresh. A non-empty folder without ar's marker is refused, never emptied. `lock`: one already taken.
    """

    def __init__(self, path: str | Path, fingerprint: dict[str, str], resume: bool = True,
                 lock: WorkLock | None = None):
        self.path = Path(path)
        self.fingerprint = fingerprint
        check_work_dir(self.path)
        self.lock = lock or WorkLock.acquire(self.path)
        state = read_state(self.path)  # again, now that no other run can change it
        self.made_folder = self.lock.made_folder if state is None else bool(state.get("made_folder"))
        self.done = 0
        if state is not None and resume:
            old = state["fingerprint"]
            diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            if diff:
                self.release()
                raise CheckpointError(
                    f"work_dir={str(self.path)!r} holds an unfinished run with a different {', '.join(diff)}; "
                    "rerun with the same settings to resume it, pass resume=False to start over, "
                    "or choose another work_dir")
            self.done = state["done"]
        elif state is not None:
            self._delete_own_files()
        if self.done == 0:
            self._write_state()

    def _write_state(self) -> None:
        _save({"ar_work_dir": MARKER, "fingerprint": self.fingerprint, "done": self.done,
               "made_folder": self.made_folder}, self.path / "run.json")

    def _delete_own_files(self) -> None:
        """Delete the files ar writes here (by name); anything else in the folder stays."""
        for p in self.path.iterdir():
            if OWN_FILES.match(p.name) and p.is_file() and p.name != "run.json":
                p.unlink()
        (self.path / "run.json").unlink(missing_ok=True)

    def save_block(self, index: int, records: dict[str, QuantizedTensor], chain: dict[str, torch.Tensor]) -> None:
        """Record block `index` as finished, with its records and the inputs of the next block."""
        _save({n: record_state(qt) for n, qt in records.items()}, self.path / f"block_{index:04d}.pt")
        _save({k: v.cpu() for k, v in chain.items()}, self.path / f"chain_{index:04d}.pt")
        self.done = index + 1
        self._write_state()
        for old in self.path.glob("chain_*.pt"):
            if old.name != f"chain_{index:04d}.pt":
                old.unlink()

    def _load(self, name: str) -> Any:
        """torch.load of one of ar's files with weights_only=True; CheckpointError when it is corrupt or holds
        anything else (a pickle ar did not write is never run)."""
        try:
            return torch.load(self.path / name, weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"work_dir file {str(self.path / name)!r} is corrupt or holds objects ar does not "
                                  f"write ({type(exc).__name__}; it was not unpickled); delete the folder "
                                  f"{str(self.path)!r} or pass resume=False to start over") from None

    def load_block(self, index: int) -> dict[str, QuantizedTensor]:
        """Records of finished block `index`."""
        states = self._load(f"block_{index:04d}.pt")
        try:
            return {n: record_from_state(d) for n, d in states.items()}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"work_dir file {str(self.path / f'block_{index:04d}.pt')!r} does not hold block "
                                  f"records ({type(exc).__name__}); delete the folder {str(self.path)!r} or pass "
                                  "resume=False to start over") from None

    def save_file(self, name: str, obj: dict) -> None:
        """Write one of ar's named side files (`teacher.pt`, `e2e.pt`: the end-to-end stage's state) atomically."""
        if not OWN_FILES.match(name):
            raise ValueError(f"{name!r} is not one of ar's work-dir file names")
        _save(obj, self.path / name)

    def has_file(self, name: str) -> bool:
        """Whether the side file `name` was written by this run (or the one it resumes)."""
        return (self.path / name).is_file()

    def load_file(self, name: str) -> Any:
        """A side file written by `save_file` (tensors and plain values only)."""
        return self._load(name)

    def load_chain(self) -> dict[str, torch.Tensor]:
        """Hidden states entering the first unfinished block."""
        return self._load(f"chain_{self.done - 1:04d}.pt")

    def release(self) -> None:
        """Let another run use the folder (this run keeps its files)."""
        self.lock.release()

    def remove(self) -> None:
        """Delete ar's files (after the output is safely written), and the folder when ar made it and it is empty;
        nothing when another run took the folder over since `release`."""
        if self.lock.fd is None:
            try:
                self.lock = WorkLock.acquire(self.path)
            except CheckpointError:
                return
        self._delete_own_files()
        self.lock.release(cleanup=True)
        if self.made_folder and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
