"""Evaluation text: a local file, an embedded corpus ("wiki", held-out split) or a Hugging Face dataset."""

from __future__ import annotations

import importlib
from pathlib import Path

from ar_core.errors import DataError

HF_PREFIX = "hf:"


def load_text(source: str) -> tuple[str, str]:
    """Return (text, description) for `source`.

    `source` is a path to a UTF-8 text file; or an embedded corpus name with an optional split, e.g. "wiki" or
    "wiki:test" (default split "test", text never used for calibration); or "hf:PATH[:CONFIG[:SPLIT]]" for a hub
    dataset's "text" column (needs the network or a local datasets cache; split defaults to "test").
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8"), f"file {path}"
    if source.startswith(HF_PREFIX):
        return _hub_text(source[len(HF_PREFIX):])
    if "/" in source or path.suffix:
        raise DataError(f"text={source!r}: no such file; give a text file, an embedded corpus such as 'wiki', "
                        "or 'hf:PATH[:CONFIG[:SPLIT]]'")
    name, _, split = source.partition(":")
    return _corpus_text(name, split or "test"), f"corpus {name}:{split or 'test'}"


def _corpus_text(name: str, split: str) -> str:
    try:
        corpora = importlib.import_module("ar_core.corpora")
    except ImportError as exc:
        raise DataError(f"text={name!r}: embedded corpora need ar_core.corpora, which this ar-core lacks") from exc
    return corpora.corpus_text(name, split)


def _hub_text(spec: str) -> tuple[str, str]:
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise DataError(f"text='hf:{spec}' is not allowed: use hf:PATH[:CONFIG[:SPLIT]]")
    path, config, split = (parts + [None, None])[:3]
    try:
        import datasets

        ds = datasets.load_dataset(path, config or None, split=split or "test")
    except Exception as exc:  # network, cache or schema failures all surface as one clear error
        raise DataError(f"text='hf:{spec}' cannot be loaded ({type(exc).__name__}: {exc}); offline, give a local "
                        "text file or an embedded corpus such as 'wiki'") from exc
    if "text" not in ds.column_names:
        raise DataError(f"text='hf:{spec}' has no 'text' column (columns: {ds.column_names})")
    return "\n".join(t for t in ds["text"] if t), f"hub {spec}"
