"""`evaluate`: one flat, JSON-ready report (perplexity, KL, top-1, size, bits per weight) for one checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from .divergence import kl_divergence
from .loading import load_model, load_tokenizer
from .perplexity import perplexity
from .protocol import EvalProtocol
from .scoring import stderr_progress
from .size import count_parameters, size_report
from .text import load_text
from .windows import bos_token_id, tokenize


def evaluate(model: str | Path, reference: str | Path | None = None, text: str = "wiki",
             protocol: EvalProtocol = EvalProtocol(), device: str = "cpu", name: str | None = None,
             show_progress: bool = True, trust_remote_code: bool = False) -> dict:
    """Evaluate the checkpoint `model`; with `reference` (its 16-bit model) add KL divergence and top-1 agreement.

    The tokenizer comes from `reference` when given (both models must share it). The report holds the protocol
    (text source, window, stride, BOS) next to the numbers. The models' own code runs only with
    `trust_remote_code=True`.
    """
    trust = dict(trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(reference or model, **trust)
    raw, source = load_text(text)
    ids = tokenize(tokenizer, raw)
    bos = bos_token_id(tokenizer, protocol)
    progress = stderr_progress(f"eval {Path(model).name}") if show_progress else None
    report: dict = {"name": name or Path(model).name, "model": str(model),
                    "reference": str(reference) if reference else None, "text": source, "n_text_tokens": len(ids)}
    qmodel = load_model(model, device, **trust)
    if reference is None:
        res = perplexity(qmodel, ids, protocol, bos, progress).to_dict()
        report.update(ppl=res.pop("ppl"), **res)
    else:
        ref = load_model(reference, device, **trust)
        res = kl_divergence(qmodel, ref, ids, protocol, bos, progress).to_dict()
        report.update(ppl=res.pop("ppl_quantized"), **res)
    if reference and Path(reference).is_dir():
        n_params = count_parameters(reference, **trust)
    else:  # a GGUF file loads dequantized, so its parameters are the 16-bit model's
        n_params = sum(p.numel() for p in qmodel.parameters()) if Path(model).suffix == ".gguf" else None
    report.update(size_report(model, n_params, **trust).to_dict())
    return report


def save_report(report: dict, path: str | Path) -> Path:
    """Write `report` as indented JSON (parent directories created) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(report, indent=2) + "\n")
    return p


def load_report(path: str | Path) -> dict:
    """Read a report written by `save_report`."""
    return json.loads(Path(path).read_text())
