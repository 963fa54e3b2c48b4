"""Documents -> fixed-length token samples: chat rendering, tokenization, filtering, truncation and concatenation."""

from __future__ import annotations

import random
from typing import Any

from ar_core.errors import DataError

from .spec import DatasetSpec

def render(tokenizer, doc: Any, spec: DatasetSpec) -> tuple[str, bool]:
    """(text, templated) for one document.

    The chat template is used when the spec asks for it, and by default for conversations when the tokenizer has
    one; a string then becomes one user turn, after the spec's system prompt if any. Without the template a
    conversation is its turns' contents, one per line.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    templated = spec.apply_chat_template
    if templated is None:
        templated = isinstance(doc, list) and has_template
    if not templated:
        return ("\n".join(str(m.get("content", "")) for m in doc) if isinstance(doc, list) else doc), False
    if not has_template:
        raise DataError(f"dataset {spec.name!r}: apply_chat_template is on but the tokenizer has no chat template")
    messages = list(doc) if isinstance(doc, list) else [{"role": "user", "content": doc}]
    if spec.system_prompt is not None and messages[0].get("role") != "system":
        messages.insert(0, {"role": "system", "content": spec.system_prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False), True


def _adds_bos(tokenizer) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def _looks_padded(ids: list[int], seqlen: int) -> bool:
    """A sample whose last token fills more than half of it is padding, not text."""
    return ids.count(ids[-1]) > seqlen // 2


def _token_ids(tokenizer, docs: list[Any], spec: DatasetSpec, plain_special: bool, **kwargs):
    """Token ids of each rendered document, lazily (callers stop early).

    A rendered chat template already holds its special tokens, so only plain text gets `plain_special`.
    """
    for doc in docs:
        text, templated = render(tokenizer, doc, spec)
        yield tokenizer(text, add_special_tokens=plain_special and not templated, verbose=False,
                        **kwargs)["input_ids"]


def whole_samples(tokenizer, docs: list[Any], spec: DatasetSpec, seqlen: int, limit: int) -> list[list[int]]:
    """Up to `limit` samples, one per document, truncated to seqlen; shorter documents are dropped."""
    out = []
    for ids in _token_ids(tokenizer, docs, spec, True, truncation=True, max_length=seqlen):
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
    for ids in _token_ids(tokenizer, docs, spec, False):
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
