"""Perplexity of a causal LM on a text, with the protocol returned beside the number."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .protocol import EvalProtocol
from .scoring import Progress, window_logprobs
from .windows import plan_windows


@dataclass
class PerplexityResult:
    """exp(mean negative log-likelihood) over `n_scored` tokens; `protocol` says how they were cut and scored."""

    ppl: float
    nll: float
    n_scored: int
    n_windows: int
    protocol: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain-JSON view."""
        return {"ppl": self.ppl, "nll": self.nll, "n_scored": self.n_scored, "n_windows": self.n_windows,
                "protocol": self.protocol}


def perplexity(model, ids: torch.Tensor, protocol: EvalProtocol = EvalProtocol(), bos_id: int | None = None,
               progress: Progress | None = None) -> PerplexityResult:
    """Perplexity of `model` on the 1-D token ids `ids` under `protocol` (bos_id required iff protocol.add_bos)."""
    if protocol.add_bos != (bos_id is not None):
        raise ValueError("pass bos_id exactly when protocol.add_bos is set")
    windows = plan_windows(len(ids), protocol)
    total, count = 0.0, 0
    for logp, targets in window_logprobs(model, ids, windows, bos_id, progress):
        total -= logp.gather(1, targets.unsqueeze(1)).sum().item()
        count += len(targets)
    nll = total / count
    return PerplexityResult(math.exp(nll), nll, count, len(windows), protocol.to_dict())
