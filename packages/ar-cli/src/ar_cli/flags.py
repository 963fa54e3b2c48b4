"""Helpers shared by the subcommands: usage errors, comma lists, relaxed JSON and model-name resolution."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ar_core.errors import CheckpointError


class UsageError(Exception):
    """A flag is bad, unknown, contradictory or not available yet: reported like argparse's errors (exit code 2)."""


def comma_list(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (empty items dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+)')
_LITERAL = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null")
_BACKSLASH = re.compile(r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})?')


def _keep_regex_backslashes(token: str) -> str:
    """In a quoted token, double each backslash that starts no JSON escape (so "mlp\\.up" keeps its backslash)."""
    return _BACKSLASH.sub(lambda m: m.group(0) if m.group(1) else r"\\", token)


def relaxed_json(text: str, flag: str) -> Any:
    """Parse JSON whose keys and string values may be unquoted, e.g. '{k_proj:{bits:8},lm_head:{bits:16}}'.

    A path to an existing .json file is read instead. Errors name `flag`. A backslash that starts no JSON escape is
    kept as written, so regex keys such as "model\\.layers\\.0" work quoted or not; JSON's own escapes (\\\\, \\",
    \\b, \\n, ...) keep their JSON meaning (write \\\\b for a regex word boundary).
    """
    if text.endswith(".json"):
        try:
            path = Path(text)
            if path.is_file():
                text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{flag}: cannot read {text[:80]!r} as a UTF-8 .json file ({exc})") from None
    pos, out = 0, []
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise UsageError(f"{flag}: cannot parse {text!r} near position {pos}")
        tok = m.group(1)
        quoted = tok.startswith('"') or tok in "{}[],:" or _LITERAL.fullmatch(tok)
        out.append(_keep_regex_backslashes(tok) if tok.startswith('"') else tok if quoted else json.dumps(tok))
        pos = m.end()
    try:
        return json.loads("".join(out))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag}: {text!r} is not JSON ({exc.msg}); e.g. '{{k_proj:{{bits:8}}}}'") from None
    except RecursionError:
        raise UsageError(f"{flag}: nested too deeply to parse; e.g. '{{k_proj:{{bits:8}}}}'") from None


def group_size(text: str) -> int | tuple[int, int]:
    """'128' -> 128; '128,128' -> (128, 128) (argparse type for --group_size)."""
    parts = [int(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(text)


def model_path(name: str) -> Path:
    """A local checkpoint path, or the converted directory of an embedded model name such as 'smollm2-135m'."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    from ar_algos.models import EMBEDDED, embedded_model_path

    if name.lower() in EMBEDDED:
        return embedded_model_path(name)
    raise CheckpointError(f"model {name!r} is neither an existing path nor an embedded model "
                          f"({', '.join(EMBEDDED)})")
