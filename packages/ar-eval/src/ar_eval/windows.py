"""Cutting a token stream into scored windows (see `EvalProtocol`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ar_core.errors import DataError

from .protocol import EvalProtocol


@dataclass(frozen=True)
class Window:
    """Text tokens [begin, end) go into the model; targets [first_target, end) are scored."""

    begin: int
    end: int
    first_target: int


def plan_windows(n_tokens: int, protocol: EvalProtocol) -> list[Window]:
    """The windows over a stream of `n_tokens` tokens; each token is scored at most once."""
    shift = int(protocol.add_bos)
    windows: list[Window] = []
    prev_end = 0
    for begin in range(0, max(n_tokens - 1 + shift, 0), protocol.step):
        end = min(begin + protocol.span, n_tokens)
        first = max(prev_end, begin + 1 - shift)
        if first < end:
            windows.append(Window(begin, end, first))
        prev_end = end
        if end == n_tokens or (protocol.max_windows and len(windows) == protocol.max_windows):
            break
    if not windows:
        raise DataError(f"text of {n_tokens} tokens is too short to score (need at least {2 - shift})")
    return windows


def window_tensors(ids: torch.Tensor, window: Window, bos_id: int | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     slice]:
    """(input_ids [1, L], targets [T], logits slice) for one window; logits[0, slice] predict the targets."""
    text = ids[window.begin:window.end]
    if bos_id is not None:
        text = torch.cat([torch.tensor([bos_id], dtype=ids.dtype), text])
    shift = int(bos_id is not None)
    start = window.first_target - window.begin - 1 + shift
    stop = window.end - window.begin - 1 + shift
    return text.unsqueeze(0), ids[window.first_target:window.end], slice(start, stop)


def tokenize(tokenizer, text: str) -> torch.Tensor:
    """Token ids of `text` as a 1-D LongTensor, without special tokens (BOS is the protocol's business)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def bos_token_id(tokenizer, protocol: EvalProtocol) -> int | None:
    """The BOS id to prepend under `protocol`, or None; an error when add_bos is asked of a tokenizer without one."""
    if not protocol.add_bos:
        return None
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise DataError("add_bos=True but the tokenizer has no bos_token_id; evaluate with add_bos=False")
    return int(bos)
