"""Where calibration documents come from: embedded offline corpora, local files and Hugging Face hub datasets.

A source turns a `DatasetSpec` into a list of documents. A document is a string, or a chat conversation (a list of
{"role", "content"} dicts) that is rendered with the tokenizer's chat template. Every named source is registered in
`ar_core.registry.DATASETS` (here and through the `ar.datasets` entry points of ar-algos).
"""

from __future__ import annotations

import functools
import json
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any, Callable

from ar_core import corpora
from ar_core.errors import ArError, DataError
from ar_core.registry import DATASETS

from .spec import DatasetSpec

LOCAL_SUFFIXES = (".json", ".jsonl", ".txt")
OFFLINE_ALTERNATIVES = ("use a local source instead: 'wiki' (Wikipedia text shipped in gensim), 'pydoc' (Python's "
                        "help topics), a local .json/.jsonl/.txt file path, or pass a list of strings")
_TRUTHY = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether the user asked for offline mode: HF_HUB_OFFLINE, HF_DATASETS_OFFLINE or TRANSFORMERS_OFFLINE is true."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(k, "").strip().lower() in _TRUTHY for k in names)


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face hub (HF_ENDPOINT, default huggingface.co:443) opens within
    `timeout` seconds; asked once per process, so an offline machine learns it at once instead of after the hub
    client's retries."""
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def _document(item: Any, where: str) -> Any:
    """One document from a JSON item: a string, a conversation, or a dict holding either."""
    if isinstance(item, str):
        return item.rstrip()
    if isinstance(item, list) and item and all(isinstance(m, dict) and "content" in m for m in item):
        return item
    if isinstance(item, dict):
        for key in ("text", "messages", "conversations", "input_ids"):
            if key in item:
                return _document(item[key], where)
        if len(item) == 1:
            return _document(next(iter(item.values())), where)
        raise DataError(f"{where}: an item with keys {sorted(item)[:8]} has no 'text' or 'messages' field; allowed: "
                        "strings, or dicts with 'text', 'messages', 'conversations' or 'input_ids'")
    raise DataError(f"{where}: items must be strings, conversations or dicts with 'text'; got {type(item).__name__}")


def read_local_file(path: Path) -> list[Any]:
    """Documents of a local calibration file.

    `.json`: a list (or a dict, whose values are used) of items; `.jsonl`: one item per line; an item is a string,
    a dict with "text" (or "messages", or a single key), or a chat conversation. `.txt`: one document per block of
    text separated by blank lines.
    """
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        raise DataError(f"calibration file {str(path)!r} has suffix {path.suffix!r}; allowed: "
                        f"{', '.join(LOCAL_SUFFIXES)}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"calibration file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        "save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"cannot read calibration file {str(path)!r}: {exc}") from exc
    try:
        if path.suffix.lower() == ".txt":
            return [block.strip() for block in text.split("\n\n") if block.strip()]
        if path.suffix.lower() == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"cannot read calibration file {str(path)!r}: {exc}") from exc
    if isinstance(items, dict):
        items = list(items.values())
    if not isinstance(items, list):
        raise DataError(f"calibration file {str(path)!r} must hold a JSON list or object, got {type(items).__name__}")
    return [_document(item, str(path)) for item in items]


@dataclass(frozen=True)
class EmbeddedCorpus:
    """An offline corpus from `ar_core.corpora`; calibration always reads its "train" split."""

    corpus: str
    description: str
    default_concat: bool = True

    def documents(self, spec: DatasetSpec) -> list[Any]:
        """The corpus' calibration documents (its disjoint "train" split)."""
        if spec.split not in (None, ("train",)):
            raise DataError(f"dataset {spec.name!r}: split={'+'.join(spec.split)!r} is not allowed: calibration "
                            "reads only 'train'; the 'test' split is held out for evaluation")
        return corpora.corpus_documents(self.corpus, "train")


@dataclass(frozen=True)
class HubDataset:
    """A Hugging Face hub dataset read with `datasets.load_dataset` (needs the hub or the local datasets cache)."""

    repo: str
    default_split: str
    to_document: Callable[[dict], Any]
    splits: tuple[str, ...] | None = None
    config: str | None = None
    streaming_limit: int | None = None
    default_concat: bool = False

    @property
    def description(self) -> str:
        return f"Hugging Face dataset {self.repo} (online)"

    def documents(self, spec: DatasetSpec) -> list[Any]:
        """Load the requested splits and turn each row into a document."""
        splits = spec.split or (self.default_split,)
        if self.splits is not None and any(s not in self.splits for s in splits):
            raise DataError(f"dataset {spec.name!r}: split={'+'.join(splits)!r} is not allowed: "
                            f"choose from {'+'.join(self.splits)}")
        docs = []
        for split in splits:
            for row in self._rows(split):
                doc = self.to_document(row)
                if doc:
                    docs.append(doc)
        return docs

    def _rows(self, split: str):
        try:
            import datasets

            if self.streaming_limit:
                stream = datasets.load_dataset(self.repo, self.config, split=split, streaming=True)
                return [row for row, _ in zip(stream, range(self.streaming_limit))]
            return datasets.load_dataset(self.repo, self.config, split=split)
        except ArError:
            raise
        except Exception as exc:  # network, cache, schema: all mean this source cannot be used now
            state = ("the Hugging Face hub is unreachable (offline mode is set or no connection) "
                     "and it is not in the local datasets cache" if hub_offline() or isinstance(exc, ConnectionError)
                     else f"loading failed ({type(exc).__name__}: {exc})")
            raise DataError(f"cannot load hub dataset {self.repo!r} split {split!r}: {state}; "
                            f"{OFFLINE_ALTERNATIVES}") from exc


def _column(name: str) -> Callable[[dict], Any]:
    def pick(row: dict) -> Any:
        if name not in row:
            raise DataError(f"hub dataset rows have no {name!r} column (columns: {sorted(row)[:10]}); "
                            "use a local file or a list of strings for custom data")
        return row[name]
    return pick


def _joined(*names: str) -> Callable[[dict], str]:
    return lambda row: "\n".join(str(row[n]) for n in names if row.get(n))


WIKI = EmbeddedCorpus("wiki", "English Wikipedia articles shipped in gensim (train split; offline)")
PYDOC = EmbeddedCorpus("pydoc", "Python's pydoc_data help topics (train split; offline, zero install)")
AUSTEN = EmbeddedCorpus("austen", "Jane Austen novels from the r-cran-janeaustenr .deb via $AR_AUSTEN_DIR (train)")
PILE_10K = HubDataset("NeelNanda/pile-10k", "train", _column("text"), splits=("train",))
PILE_VAL = HubDataset("mit-han-lab/pile-val-backup", "validation", _column("text"), splits=("validation",))
MBPP = HubDataset("google-research-datasets/mbpp", "train", _joined("text", "code"),
                  splits=("train", "validation", "test", "prompt"), config="full")
ULTRACHAT = HubDataset("HuggingFaceH4/ultrachat_200k", "train_sft", _column("messages"),
                       splits=("train_sft", "test_sft", "train_gen", "test_gen"))
OPENCODE = HubDataset("nvidia/OpenCodeInstruct", "train", _joined("input", "output"), splits=("train",),
                      streaming_limit=20000, default_concat=True)
ULTRA_FINEWEB = HubDataset("openbmb/Ultra-FineWeb", "en", _column("content"), splits=("en", "zh"),
                           streaming_limit=20000)
CCI3_HQ = HubDataset("BAAI/CCI3-HQ", "train", _column("text"), splits=("train",), streaming_limit=20000)

NAMED_SOURCES = {
    "wiki": WIKI, "pydoc": PYDOC, "austen": AUSTEN,
    "pile-10k": PILE_10K, "neelnanda/pile-10k": PILE_10K,
    "pile-val-backup": PILE_VAL, "mit-han-lab/pile-val-backup": PILE_VAL,
    "mbpp": MBPP, "google-research-datasets/mbpp": MBPP,
    "ultrachat_200k": ULTRACHAT, "huggingfaceh4/ultrachat_200k": ULTRACHAT,
    "opencode-instruct": OPENCODE, "nvidia/opencodeinstruct": OPENCODE,
    "ultra-fineweb": ULTRA_FINEWEB, "openbmb/ultra-fineweb": ULTRA_FINEWEB,
    "cci3-hq": CCI3_HQ, "baai/cci3-hq": CCI3_HQ,
}
for _name, _source in NAMED_SOURCES.items():
    DATASETS.register(_name, _source)


@dataclass(frozen=True)
class LocalFile:
    """A local .json/.jsonl/.txt file; .txt files default to concat (one text cut into chunks)."""

    path: Path

    @property
    def default_concat(self) -> bool:
        return self.path.suffix.lower() == ".txt"

    def documents(self, spec: DatasetSpec) -> list[Any]:
        """The file's documents (split does not apply to files)."""
        if spec.split is not None:
            raise DataError(f"dataset {spec.name!r}: split= applies to hub datasets only, not to local files")
        docs = read_local_file(self.path)
        if not docs:
            raise DataError(f"calibration file {str(self.path)!r} is empty: it holds no documents; allowed: "
                            "a .txt file with text, or a .json/.jsonl file of strings or {\"text\": ...} items")
        return docs


def local_path_kind(name: str) -> str | None:
    """"file", "dir" or None (missing) for `name` read as a local path; unreadable paths raise DataError."""
    try:
        path = Path(name).expanduser()
        return "file" if path.is_file() else "dir" if path.exists() else None
    except (OSError, RuntimeError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise DataError(f"dataset {name!r} cannot be checked as a local path: {exc}") from exc


def resolve_source(spec: DatasetSpec):
    """The source for a spec: a registered name, an existing local file, or a hub id of the form owner/name."""
    key = spec.name.lower()
    if key in DATASETS.names():
        return DATASETS.get(key)
    kind = local_path_kind(spec.name)
    path = Path(spec.name)
    if kind == "file":
        return LocalFile(path.expanduser())
    if kind == "dir":
        raise DataError(f"dataset {spec.name!r} is a directory; give a .json, .jsonl or .txt file")
    if path.suffix.lower() in LOCAL_SUFFIXES or spec.name.startswith((".", "/", "~")):
        raise DataError(f"calibration file {spec.name!r} does not exist")
    if spec.name.count("/") == 1 and all(spec.name.split("/")):
        return HubDataset(spec.name, (spec.split or ("train",))[0], _column("text"))
    raise DataError(f"unknown calibration dataset {spec.name!r}; known names: {', '.join(sorted(NAMED_SOURCES))}; "
                    "or give a local .json/.jsonl/.txt file path or a hub id owner/name")
