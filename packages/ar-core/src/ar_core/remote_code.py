"""A model folder's own Python code (`auto_map` in its config files) runs only when the user passed
trust_remote_code=True. Every transformers load passes the choice explicitly (never None, which makes transformers
ask on stdin, where a piped `yes` would answer); `remote_code_guard` turns transformers' refusal into an ArError.

    with remote_code_guard(path, trust_remote_code):
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import CheckpointError, field_error

CONFIG_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


def auto_map_entries(path: str | Path) -> list[str]:
    """'file: module.Class' for each `auto_map` entry in the config files of directory `path` (empty when none)."""
    entries = []
    for name in CONFIG_FILES:
        try:
            data = json.loads((Path(path) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if isinstance(auto_map, dict):
            entries += [f"{name}: {v if isinstance(v, str) else next(iter(v), v)}" for v in auto_map.values()]
    return entries


def check_trust_flag(trust_remote_code) -> bool:
    """`trust_remote_code` when it is True or False; ArError for anything else (None would let transformers
    prompt)."""
    if not isinstance(trust_remote_code, bool):
        raise field_error(CheckpointError, "trust_remote_code", trust_remote_code, "True or False")
    return trust_remote_code


def remote_code_error(path: str | Path) -> CheckpointError:
    """The error for a model at `path` whose loading needs its own code while trust_remote_code=False."""
    found = auto_map_entries(path)
    where = f" ({'; '.join(found[:4])})" if found else ""
    return CheckpointError(f"model {str(path)!r} needs its own Python code to load{where} and trust_remote_code=False "
                           "(the default); pass trust_remote_code=True only if you trust the code in that folder")


@contextmanager
def remote_code_guard(path: str | Path, trust_remote_code: bool) -> Iterator[None]:
    """Run a transformers load of `path`: transformers' "pass trust_remote_code=True" refusal (a ValueError)
    becomes `remote_code_error`; a non-bool `trust_remote_code` is refused first."""
    check_trust_flag(trust_remote_code)
    try:
        yield
    except ValueError as exc:
        if not trust_remote_code and "trust_remote_code=True" in str(exc):
            raise remote_code_error(path) from None
        raise
