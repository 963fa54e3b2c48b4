"""KL divergence and top-1 agreement of a quantized model against its 16-bit reference on the same tokens.

Reported like llama.cpp's `--kl-divergence`: mean, median, 99th percentile and max of the per-token
KL(P_ref || P_quant), the share of tokens where both models rank the same token first, and both perplexities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .protocol import EvalProtocol
from .scoring import Progress, window_logprobs
from .windows import plan_windows


@dataclass
class DivergenceResult:
    """Per-token statistics of the quantized model against the reference over `n_scored` tokens."""

    kl_mean: float
    kl_median: float
    kl_p99: float
    kl_max: float
    top1_agreement: float
    ppl_reference: float
    ppl_quantized: float
    n_scored: int
    n_windows: int
    protocol: dict = field(default_factory=dict)

    @property
    def ppl_ratio(self) -> float:
        """PPL(quantized) / PPL(reference)."""
        return self.ppl_quantized / self.ppl_reference

    def to_dict(self) -> dict:
        """Plain-JSON view (ppl_ratio included)."""
        keys = ("kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement", "ppl_reference", "ppl_quantized",
                "n_scored", "n_windows", "protocol")
        return {**{k: getattr(self, k) for k in keys}, "ppl_ratio": self.ppl_ratio}


def token_kl(logp_ref: torch.Tensor, logp_q: torch.Tensor) -> torch.Tensor:
    """KL(P_ref || P_q) per row of two [T, V] log-probability tensors."""
    return (logp_ref.exp() * (logp_ref - logp_q)).sum(-1).clamp_min(0.0)


def kl_divergence(quantized, reference, ids: torch.Tensor, protocol: EvalProtocol = EvalProtocol(),
                  bos_id: int | None = None, progress: Progress | None = None) -> DivergenceResult:
    """Compare `quantized` with `reference` (same tokenizer) window by window on the 1-D token ids `ids`."""
    if protocol.add_bos != (bos_id is not None):
        raise ValueError("pass bos_id exactly when protocol.add_bos is set")
    windows = plan_windows(len(ids), protocol)
    kls, same, nll_ref, nll_q = [], 0, 0.0, 0.0
    pairs = zip(window_logprobs(reference, ids, windows, bos_id),
                window_logprobs(quantized, ids, windows, bos_id, progress))
    for (lr, targets), (lq, _) in pairs:
        if lr.shape != lq.shape:
            raise ValueError(f"vocabularies differ: reference logits {tuple(lr.shape)}, quantized {tuple(lq.shape)}")
        kls.append(token_kl(lr, lq))
        same += int((lr.argmax(-1) == lq.argmax(-1)).sum())
        idx = targets.unsqueeze(1)
        nll_ref -= lr.gather(1, idx).sum().item()
        nll_q -= lq.gather(1, idx).sum().item()
    kl = torch.cat(kls).double()
    n = kl.numel()
    return DivergenceResult(
        kl_mean=kl.mean().item(), kl_median=kl.median().item(), kl_p99=torch.quantile(kl, 0.99).item(),
        kl_max=kl.max().item(), top1_agreement=same / n, ppl_reference=math.exp(nll_ref / n),
        ppl_quantized=math.exp(nll_q / n), n_scored=n, n_windows=len(windows), protocol=protocol.to_dict())
