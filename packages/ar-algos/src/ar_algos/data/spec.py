"""The calibration dataset grammar: `name[:option[=value]]...[,name...]`.

* `,` separates datasets and `:` separates a dataset's options; whitespace around items is ignored.
* Options: `num=N` (samples from this dataset), `concat` / `concat=true|false` (join texts and cut them into
  seqlen chunks), `split=a+b` (hub splits to read), `apply_chat_template` / `apply_chat_template=true|false`
  (unset: only conversations use the template), `system_prompt="..."` (also turns the chat template on; applies
  to its own dataset only).
* Values may be quoted with `"` or `'`, so a system prompt can hold commas and colons; `\\` escapes a quote.
Example: `./calib.jsonl:num=64,wiki:concat,mbpp:num=32:split=train+validation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ar_core.errors import DataError

OPTIONS = ("num", "concat", "split", "apply_chat_template", "system_prompt")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]%]+", re.ASCII)
_MAX_NUM = 10**9


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a calibration spec and its options (None means the dataset's own default)."""

    name: str
    num: int | None = None
    concat: bool | None = None
    split: tuple[str, ...] | None = None
    apply_chat_template: bool | None = None
    system_prompt: str | None = None


def _join_pieces(pieces: list[tuple[str, bool]]) -> str:
    """Join (text, quoted) pieces, stripping whitespace from unquoted pieces at the two ends."""
    pieces = [p for p in pieces if p[0] or p[1]]
    if pieces and not pieces[0][1]:
        pieces[0] = (pieces[0][0].lstrip(), False)
    if pieces and not pieces[-1][1]:
        pieces[-1] = (pieces[-1][0].rstrip(), False)
    return "".join(text for text, _ in pieces)


def _scan(spec: str) -> list[list[str]]:
    """Split `spec` at `,` and `:` outside quotes: one list of raw parts (name first, then options) per dataset."""
    datasets, parts, pieces, buf, quote, i = [], [], [], [], None, 0

    def flush(quoted: bool) -> None:
        pieces.append(("".join(buf), quoted))
        buf.clear()

    def end_part() -> None:
        flush(False)
        parts.append(_join_pieces(pieces))
        pieces.clear()

    while i < len(spec):
        ch = spec[i]
        if quote and ch == "\\" and spec[i + 1:i + 2] in ("'", '"', "\\"):
            buf.append(spec[i + 1])
            i += 1
        elif quote and ch == quote:
            flush(True)
            quote = None
        elif quote:
            buf.append(ch)
        elif ch in ("'", '"'):
            flush(False)
            quote = ch
        elif ch in ",:":
            end_part()
            if ch == ",":
                datasets.append(parts)
                parts = []
        else:
            buf.append(ch)
        i += 1
    if quote:
        raise DataError(f"dataset spec {spec!r} has an unterminated {quote} quote")
    end_part()
    datasets.append(parts)
    return datasets


def _parse_bool(option: str, value: str | None, where: str) -> bool:
    if value is None or value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise DataError(f"{where}: {option}={value!r} is not allowed: use true or false (or the bare option for true)")


def _parse_num(value: str | None, where: str) -> int:
    if value is None or not re.fullmatch(r"[0-9]{1,10}", value, re.ASCII) or not 0 < int(value) <= _MAX_NUM:
        raise DataError(f"{where}: num={value!r} is not allowed: a whole number from 1 to {_MAX_NUM}")
    return int(value)


def _parse_split(value: str | None, where: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in (value or "").split("+"))
    if not names or not all(_SPLIT_NAME.fullmatch(n) for n in names):
        raise DataError(f"{where}: split={value!r} is not allowed: split names joined by '+', "
                        "e.g. split=train+validation")
    return names


def _parse_dataset(parts: list[str], spec: str) -> DatasetSpec:
    name, options = parts[0], parts[1:]
    if not name:
        raise DataError(f"dataset spec {spec!r} has an empty dataset name; separate datasets with ',' and give "
                        "each a name, a local file path or a hub id")
    where = f"dataset {name!r}"
    seen: dict[str, object] = {}
    for raw in options:
        key, eq, value = raw.partition("=")
        key = key.strip().lower()
        value = value.strip() if eq else None
        if key not in OPTIONS:
            raise DataError(f"{where}: unknown option {raw!r}; allowed options: {', '.join(OPTIONS)}")
        if key in seen:
            raise DataError(f"{where}: option {key!r} is given twice")
        if key == "num":
            seen[key] = _parse_num(value, where)
        elif key in ("concat", "apply_chat_template"):
            seen[key] = _parse_bool(key, value, where)
        elif key == "split":
            seen[key] = _parse_split(value, where)
        else:
            if value is None:
                raise DataError(f'{where}: system_prompt needs a value, e.g. system_prompt="You are helpful."')
            seen[key] = value
    if "system_prompt" in seen and seen.get("apply_chat_template") is False:
        raise DataError(f"{where}: system_prompt needs the chat template, but apply_chat_template=false is given")
    if "system_prompt" in seen:
        seen["apply_chat_template"] = True
    return DatasetSpec(name=name, **seen)


def parse_dataset_spec(spec: str) -> list[DatasetSpec]:
    """Parse a calibration dataset spec string into one `DatasetSpec` per comma-separated dataset.

    Raises `DataError` naming the offending part for an empty name, an unknown or repeated option, a bad value or
    an unterminated quote.
    """
    if not isinstance(spec, str):
        raise DataError(f"dataset spec must be a string, got {type(spec).__name__}")
    if not spec.strip():
        raise DataError("dataset spec is empty; give a dataset name such as 'wiki', 'pydoc', a file path or a hub id")
    return [_parse_dataset(parts, spec) for parts in _scan(spec)]
