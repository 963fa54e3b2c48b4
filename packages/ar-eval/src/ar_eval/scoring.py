"""Running a causal LM over planned windows and collecting the log-probabilities of the scored positions."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import torch

from .windows import Window, window_tensors

Progress = Callable[[int, int], None]


def model_device(model) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def window_logprobs(model, ids: torch.Tensor, windows: list[Window], bos_id: int | None,
                    progress: Progress | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (log_softmax float32 [T, V] on CPU, targets [T]) per window, in order."""
    device = model_device(model)
    for i, w in enumerate(windows):
        inp, targets, sl = window_tensors(ids, w, bos_id)
        logits = model(input_ids=inp.to(device)).logits[0, sl]
        yield torch.log_softmax(logits.float(), dim=-1).cpu(), targets
        if progress is not None:
            progress(i + 1, len(windows))


def stderr_progress(label: str) -> Progress:
    """A plain-text progress callback: 'label: window i/N, ETA s' on stderr (one line per call)."""
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        eta = (time.monotonic() - start) / done * (total - done)
        print(f"{label}: window {done}/{total}, ETA {eta:.0f} s", file=sys.stderr, flush=True)

    return report
