"""Documents -> fixed-length token samples: chat rendering, tokenization, filtering, truncation and concatenation."""

from __future__ import annotations

import random
from typing import Any

from ar_core.errors import DataError

from .spec import DatasetSpec

_BATCH = 32


def render(tokenizer, doc: Any, spec: DatasetSpec) -> str:
    """The text of one document; with the chat template on, a string becomes one user turn (after the system prompt)."""
    if not spec.apply_chat_template:
        if isinstance(doc, list):  # a conversation without the template: its turns, one per line
            return "\n".join(str(m.get("content", "")) for m in doc)
        return doc
    messages = list(doc) if isinstance(doc, list) else [{"role": "user", "content": doc}]
    if spec.system_prompt is not None and (not messages or messages[0].get("role") != "system"):
        messages.insert(0, {"role": "system", "content": spec.system_prompt})
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"dataset {spec.name!r}: apply_chat_template is on but the tokenizer has no chat template")
    return tokenizer.apply_chat_template(messages, tokenize=False)


def _adds_bos(tokenizer) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def _looks_padded(ids: list[int], seqlen: int) -> bool:
    """A sample whose last token fills more than half of it is padding, not text."""
    return ids.count(ids[-1]) > seqlen // 2


def _batches(tokenizer, docs: list[Any], spec: DatasetSpec, special: bool, **kwargs):
    """Token ids of each rendered document, tokenized in batches that double up to _BATCH (callers stop early)."""
    start, size = 0, 1
    while start < len(docs):
        texts = [render(tokenizer, d, spec) for d in docs[start:start + size]]
        yield from tokenizer(texts, add_special_tokens=special, verbose=False, **kwargs)["input_ids"]
        start, size = start + size, min(2 * size, _BATCH)


def whole_samples(tokenizer, docs: list[Any], spec: DatasetSpec, seqlen: int, limit: int) -> list[list[int]]:
    """Up to `limit` samples, one per document, truncated to seqlen; shorter documents are dropped."""
    out = []
    special = not spec.apply_chat_template  # a rendered chat template already holds its special tokens
    for ids in _batches(tokenizer, docs, spec, special, truncation=True, max_length=seqlen):
        if len(ids) == seqlen and not _looks_padded(ids, seqlen):
            out.append(list(ids))
            if len(out) >= limit:
                break
    return out


def concat_samples(tokenizer, docs: list[Any], spec: DatasetSpec, seqlen: int, limit: int) -> list[list[int]]:
    """Up to `limit` seqlen-token chunks of all documents joined end to end.

    Each document is tokenized without special tokens and followed by EOS (when the tokenizer has one); a chunk
    starts with BOS when the tokenizer adds BOS to plain text, so a chunk looks like one tokenized passage.
    """
    bos = [tokenizer.bos_token_id] if _adds_bos(tokenizer) else []
    eos = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
    body = seqlen - len(bos)
    if body < 1:
        raise DataError(f"seqlen={seqlen} is too short to concatenate samples")
    out, stream = [], []
    for ids in _batches(tokenizer, docs, spec, False):
        stream.extend(ids)
        stream.extend(eos)
        while len(stream) >= body and len(out) < limit:
            out.append(bos + stream[:body])
            del stream[:body]
        if len(out) >= limit:
            break
    return out


def token_samples(tokenizer, docs: list[Any], spec: DatasetSpec, seqlen: int, limit: int, concat: bool,
                  seed: int) -> list[list[int]]:
    """Shuffle documents with `seed`, then cut them into at most `limit` samples of exactly seqlen tokens."""
    order = list(docs)
    random.Random(seed).shuffle(order)
    make = concat_samples if concat else whole_samples
    return make(tokenizer, order, spec, seqlen, limit)
