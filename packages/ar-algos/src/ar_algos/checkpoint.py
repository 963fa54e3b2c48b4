"""Block-granular resume: a work directory holding every finished block's records and the next block's inputs.

Layout: run.json ({"fingerprint": {...}, "done": k}), block_0000.pt ... (records of each finished block, as plain
dicts) and chain_<k-1>.pt (the hidden states entering block k). Each file is written to a temporary name and
renamed; run.json is renamed last, so a kill at any point leaves a consistent state of k finished blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ar_core.errors import CheckpointError
from ar_core.qtensor import QuantizedTensor

from .records import record_from_state, record_state


def digest(*parts: Any) -> str:
    """sha256 (first 16 hex digits) of strings, bytes and tensors."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(str((tuple(p.shape), p.dtype)).encode())
            h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:16]


def model_digest(model: torch.nn.Module) -> str:
    """Hash of the model's config and a sample (first 64 values) of every parameter."""
    config = model.config.to_json_string() if hasattr(model, "config") else type(model).__name__
    parts: list[Any] = [config]
    for name, p in model.named_parameters():
        parts += [name, p.detach().reshape(-1)[:64]]
    return digest(*parts)


def _save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".json":
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


class WorkDir:
    """A resumable run's work directory.

    With `resume=True` an existing directory is continued when its fingerprint equals `fingerprint`, and refused
    (CheckpointError naming the differing fields) otherwise; with `resume=False` it is wiped and started fresh.
    """

    def __init__(self, path: str | Path, fingerprint: dict[str, str], resume: bool = True):
        self.path = Path(path)
        self.fingerprint = fingerprint
        state_file = self.path / "run.json"
        self.done = 0
        if state_file.exists() and resume:
            state = json.loads(state_file.read_text())
            old = state.get("fingerprint", {})
            diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            if diff:
                raise CheckpointError(
                    f"work_dir={str(self.path)!r} holds an unfinished run with a different {', '.join(diff)}; "
                    "rerun with the same settings to resume it, pass resume=False to start over, "
                    "or choose another work_dir")
            self.done = int(state["done"])
        elif state_file.exists():
            shutil.rmtree(self.path)
        elif self.path.exists() and any(self.path.iterdir()):
            raise CheckpointError(f"work_dir={str(self.path)!r} exists and is not a work directory of ar (no "
                                  "run.json); give an empty or new directory")
        self.path.mkdir(parents=True, exist_ok=True)
        if not state_file.exists():
            _save({"fingerprint": fingerprint, "done": 0}, state_file)

    def save_block(self, index: int, records: dict[str, QuantizedTensor], chain: dict[str, torch.Tensor]) -> None:
        """Record block `index` as finished, with its records and the inputs of the next block."""
        _save({n: record_state(qt) for n, qt in records.items()}, self.path / f"block_{index:04d}.pt")
        _save({k: v.cpu() for k, v in chain.items()}, self.path / f"chain_{index:04d}.pt")
        _save({"fingerprint": self.fingerprint, "done": index + 1}, self.path / "run.json")
        self.done = index + 1
        for old in self.path.glob("chain_*.pt"):
            if old.name != f"chain_{index:04d}.pt":
                old.unlink()

    def load_block(self, index: int) -> dict[str, QuantizedTensor]:
        """Records of finished block `index`."""
        states = torch.load(self.path / f"block_{index:04d}.pt", weights_only=True)
        return {n: record_from_state(d) for n, d in states.items()}

    def load_chain(self) -> dict[str, torch.Tensor]:
        """Hidden states entering the first unfinished block."""
        return torch.load(self.path / f"chain_{self.done - 1:04d}.pt", weights_only=True)

    def remove(self) -> None:
        """Delete the work directory (after the output is safely written)."""
        shutil.rmtree(self.path, ignore_errors=True)
