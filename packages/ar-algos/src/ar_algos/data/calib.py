"""`get_calibration_data`: any accepted dataset form -> a list of {"input_ids", "attention_mask"} of [1, seqlen]."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
import torch.utils.data

from ar_core.errors import ArError, DataError, field_error

from .samples import token_samples, whole_samples
from .sources import LocalFile, hub_offline, hub_reachable, local_path_kind, resolve_source
from .spec import DatasetSpec, parse_dataset_spec

log = logging.getLogger("ar_algos.data")

ONLINE_DEFAULT = "NeelNanda/pile-10k"
OFFLINE_DEFAULT = "wiki"


def default_dataset() -> str:
    """The default calibration dataset: NeelNanda/pile-10k when the hub may be used and answers, "wiki" in offline
    mode or when the hub cannot be reached (`hub_reachable`, asked once)."""
    return OFFLINE_DEFAULT if hub_offline() or not hub_reachable() else ONLINE_DEFAULT


def _check_int(field: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise field_error(DataError, field, value, f"an integer >= {low}")
    return value


def allocate(available: list[int], nums: list[int | None], nsamples: int) -> list[int]:
    """Samples to take per dataset: its `num` when given, else an equal share of what the `num`s leave of nsamples.

    Shares go to the smallest datasets first; what a dataset cannot fill passes on to the larger ones.
    """
    take = [min(n, a) if n is not None else 0 for n, a in zip(nums, available)]
    rest = max(nsamples - sum(n for n in nums if n is not None), 0)
    free = sorted((i for i, n in enumerate(nums) if n is None), key=lambda i: available[i])
    for k, i in enumerate(free):
        share = rest // (len(free) - k)  # floor: a remainder goes to the larger datasets
        take[i] = min(share, available[i])
        rest -= take[i]
    return take


def check_dataset(dataset: Any) -> None:
    """Checks of a dataset spec string or path that need no tokenizer and no network, run before a model is loaded:
    the spec parses, every name is known, and every local file exists, is UTF-8 and holds documents with a usable
    field (DataError otherwise). Other dataset values (lists, DataLoaders) are checked when used."""
    if not isinstance(dataset, (str, Path)):
        return
    text = str(dataset)
    specs = [DatasetSpec(text)] if local_path_kind(text) == "file" else parse_dataset_spec(text)
    for spec in specs:
        source = resolve_source(spec)
        if isinstance(source, LocalFile):
            source.documents(spec)


def _spec_samples(tokenizer, specs: list[DatasetSpec], nsamples: int, seqlen: int, seed: int) -> list[list[int]]:
    sources = [resolve_source(s) for s in specs]  # validate every dataset before loading any
    parts = []
    for spec, source in zip(specs, sources):
        concat = source.default_concat if spec.concat is None else spec.concat
        docs = source.documents(spec)
        parts.append(token_samples(tokenizer, docs, spec, seqlen, spec.num or nsamples, concat, seed))
        if spec.num is not None and len(parts[-1]) < spec.num:
            log.warning("dataset %r gave %d samples of %d tokens, fewer than num=%d", spec.name, len(parts[-1]),
                        seqlen, spec.num)
    counts = allocate([len(p) for p in parts], [s.num for s in specs], nsamples)
    mixed = [ids for part, n in zip(parts, counts) for ids in part[:n]]
    random.Random(seed).shuffle(mixed)
    return mixed[:nsamples]


def _user_strings(tokenizer, texts: list[str], nsamples: int, seqlen: int) -> list[list[int]]:
    """The user's strings in their order (as the reference takes them): truncated to seqlen, shorter ones dropped."""
    return whole_samples(tokenizer, texts, DatasetSpec("list of strings"), seqlen, nsamples)


def _trailing_pad_mask(ids: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    mask = torch.ones_like(ids)
    if pad_id is not None:
        n = len(ids)
        while n and ids[n - 1] == pad_id:
            n -= 1
        mask[n:] = 0
    return mask


def _as_row(value: Any, field: str) -> torch.Tensor:
    """A 1-D long tensor from a [L] or [1, L] value; token ids must be integers, a mask may be bool or float."""
    try:
        row = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"calibration {field} cannot be made a tensor: {exc}") from exc
    if row.dim() == 2 and row.shape[0] == 1:
        row = row[0]
    if row.dim() != 1 or row.is_complex() or (field != "attention_mask" and row.is_floating_point()):
        raise DataError(f"calibration {field} must be integer token ids of shape [L] or [1, L], "
                        f"got {row.dtype} {tuple(row.shape)}")
    return row.long()


def _user_tokens(items: list[Any], seqlen: int, pad_id: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pre-tokenized samples: tensors/lists of ids or dicts with input_ids (and attention_mask); short ones dropped."""
    out = []
    for item in items:
        if isinstance(item, dict):
            if "input_ids" not in item:
                raise DataError(f"a calibration dict has no 'input_ids' (keys: {sorted(map(str, item))[:8]})")
            ids = _as_row(item["input_ids"], "input_ids")
            mask = _as_row(item["attention_mask"], "attention_mask") if "attention_mask" in item else None
        else:
            ids, mask = _as_row(item, "sample"), None
        if len(ids) < seqlen:
            continue
        ids = ids[:seqlen]
        mask = _trailing_pad_mask(ids, pad_id) if mask is None else mask[:seqlen]
        if len(mask) != seqlen:
            raise DataError(f"a calibration attention_mask is shorter ({len(mask)}) than its input_ids")
        out.append((ids, mask))
    return out


def _loader_items(loader) -> list[Any]:
    """Split a DataLoader's batches ([B, L] tensors or dicts of them) into per-sample items."""
    items = []
    for batch in loader:
        if isinstance(batch, dict):
            ids = torch.as_tensor(batch["input_ids"]) if "input_ids" in batch else None
            if ids is None or ids.dim() != 2:
                raise DataError("a DataLoader batch dict needs 'input_ids' of shape [batch, seqlen]")
            masks = batch.get("attention_mask")
            items += [{"input_ids": ids[i], **({"attention_mask": masks[i]} if masks is not None else {})}
                      for i in range(len(ids))]
        elif isinstance(batch, torch.Tensor) and batch.dim() == 2:
            items += list(batch)
        else:
            raise DataError(f"a DataLoader batch must be a dict with input_ids or a [batch, seqlen] tensor, "
                            f"got {type(batch).__name__}")
    return items


def _pairs(tokenizer, dataset: Any, nsamples: int, seqlen: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pad_id = getattr(tokenizer, "pad_token_id", None)
    is_text = isinstance(dataset, (str, Path)) or (isinstance(dataset, (list, tuple)) and dataset
                                                   and all(isinstance(d, str) for d in dataset))
    if is_text and not callable(tokenizer):
        raise field_error(DataError, "tokenizer", tokenizer, "a Hugging Face tokenizer (text datasets need one), or "
                          "pass dataset= as token-id tensors")
    if isinstance(dataset, (str, Path)):
        text = str(dataset)
        specs = [DatasetSpec(text)] if local_path_kind(text) == "file" else parse_dataset_spec(text)
        ids = _spec_samples(tokenizer, specs, nsamples, seqlen, seed)
    elif isinstance(dataset, torch.utils.data.DataLoader):
        return _user_tokens(_loader_items(dataset), seqlen, pad_id)[:nsamples]
    elif isinstance(dataset, (list, tuple)) and dataset and all(isinstance(d, str) for d in dataset):
        ids = _user_strings(tokenizer, list(dataset), nsamples, seqlen)
    elif isinstance(dataset, (list, tuple)) and dataset:
        return _user_tokens(list(dataset), seqlen, pad_id)[:nsamples]
    else:
        raise DataError(f"dataset={type(dataset).__name__} is not allowed: a spec string, a file path, a list of "
                        "strings, a list of token tensors or dicts, or a torch DataLoader")
    return [(torch.tensor(i, dtype=torch.long), torch.ones(len(i), dtype=torch.long)) for i in ids]


def get_calibration_data(tokenizer, dataset=None, nsamples: int = 128, seqlen: int = 2048,
                         seed: int = 42) -> list[dict[str, torch.Tensor]]:
    """Calibration samples: a list of {"input_ids", "attention_mask"}, each a LongTensor of shape [1, seqlen].

    `dataset` is a spec string (see `ar_algos.data.spec`; e.g. "wiki", "pile-10k:num=64,./mine.jsonl"), a file
    path, a list of strings, a list of token tensors or dicts with input_ids, or a torch DataLoader; None picks
    `default_dataset()` (falling back to "wiki" when the hub cannot be reached). Samples shorter than seqlen are
    dropped (unless concatenated), longer ones truncated; shuffling and mixing of datasets are seeded, a list of
    strings is taken in its order (as the reference does).
    """
    nsamples, seqlen = _check_int("nsamples", nsamples, 1), _check_int("seqlen", seqlen, 2)
    seed = _check_int("seed", seed, 0)
    if dataset is None:
        dataset = default_dataset()
        if dataset == OFFLINE_DEFAULT and not hub_offline():
            log.warning("calibration dataset not given and the Hugging Face hub cannot be reached: using %r (pass "
                        "dataset= / --dataset to choose)", dataset)
        else:
            log.info("calibration dataset not given; using %r (%s)", dataset,
                     "offline mode" if dataset == OFFLINE_DEFAULT else "online default")
        try:
            pairs = _pairs(tokenizer, dataset, nsamples, seqlen, seed)
        except ArError as exc:
            if dataset == OFFLINE_DEFAULT:
                raise
            log.warning("default calibration dataset %r failed (%s); using %r instead", dataset, exc, OFFLINE_DEFAULT)
            pairs = _pairs(tokenizer, OFFLINE_DEFAULT, nsamples, seqlen, seed)
    else:
        pairs = _pairs(tokenizer, dataset, nsamples, seqlen, seed)
    if not pairs:
        raise DataError(f"no calibration sample reaches seqlen={seqlen} tokens; lower seqlen, add concat=true to the "
                        "dataset spec, or give longer texts")
    if len(pairs) < nsamples:
        log.warning("only %d calibration samples of %d tokens are available (nsamples=%d)", len(pairs), seqlen,
                    nsamples)
    return [{"input_ids": ids[None], "attention_mask": mask[None]} for ids, mask in pairs]
