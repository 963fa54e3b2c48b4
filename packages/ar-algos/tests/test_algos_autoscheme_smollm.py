"""AutoScheme on a real model (SmolLM2-135M): the 3.0-bit budget holds, the search stays in bounded memory, and the
mixed scheme's held-out perplexity beats the uniform scheme at the nearest lower bits (W2A16G32, same RTN)."""

from __future__ import annotations

import math
import os
import threading
import time

import pytest
import torch

from ar_algos.autoscheme import AutoScheme
from ar_algos.autoscheme.scores import layer_scores
from ar_algos.blocks import find_linears
from ar_algos.rtn import rtn_layers
from ar_algos.tiny import random_samples
from ar_core.bits import layer_bits
from ar_core.corpora import corpus_text
from ar_core.presets import parse_scheme

pytestmark = pytest.mark.slow


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Samples the process's resident memory in a thread; `extra` is the peak above the value at start."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = False
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.extra = self.peak - self.base


def _ppl(model, windows: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(input_ids=windows).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    return math.exp(nll.item())


def _rtn_ppl(model, linears: dict, config: dict, windows: torch.Tensor) -> tuple[float, float]:
    """Held-out perplexity with every searched layer RTN-quantized to its option (weights restored after), and the
    average bits per weight (scale/zero bits included) that config costs."""
    saved = {n: m.weight.detach().clone() for n, m in linears.items()}
    schemes = {n: parse_scheme(config[n]) for n in linears}
    try:
        rtn_layers(linears, schemes)
        ppl = _ppl(model, windows)
    finally:
        with torch.no_grad():
            for n, m in linears.items():
                m.weight.copy_(saved[n])
    parts = [layer_bits(schemes[n], tuple(m.weight.shape)) for n, m in linears.items()]
    return ppl, sum(p.code_bits + p.param_bits for p in parts) / sum(p.elements for p in parts)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to read resident memory")
def test_smollm2_at_3_bits_stays_within_budget_and_memory_and_beats_uniform_w2():
    from ar_algos.data import get_calibration_data
    from ar_algos.models import resolve_model

    model, tokenizer = resolve_model("smollm2-135m")
    samples = get_calibration_data(tokenizer, "wiki", nsamples=8, seqlen=128)  # train split
    linears = {n: m for n, m in find_linears(model).items() if ".layers." in n}
    layer_scores(model, linears, {n: [] for n in linears}, random_samples(1, 8, vocab=1000), 1)  # runtime warm-up
    scheme = AutoScheme(3.0, "W2A16G32,W4A16G32,W8A16G32", batch_size=4, verbose=False)
    with _PeakRss() as mem:
        config = scheme.search(model, samples=samples)
    report = scheme.report
    model_16bit = sum(p.numel() for p in model.parameters()) * 2
    assert report.used_bits <= report.budget_bits == int(3.0 * report.elements)
    assert report.avg_bits <= 3.0 and len(config) == 30 * 7
    assert {"W2A16G32", "W4A16G32"} <= set(config.values())
    assert mem.extra <= 1.2 * model_16bit, (mem.extra, model_16bit)

    test_ids = tokenizer(corpus_text("wiki", "test")[:20_000], return_tensors="pt").input_ids[0]
    windows = test_ids[: 4 * 256].reshape(4, 256)  # held out: calibration came from the train split
    mixed, mixed_bits = _rtn_ppl(model, linears, config, windows)
    w2, w2_bits = _rtn_ppl(model, linears, dict.fromkeys(linears, "W2A16G32"), windows)
    w4, w4_bits = _rtn_ppl(model, linears, dict.fromkeys(linears, "W4A16G32"), windows)
    print(f"\n{report.summary()}\npeak RSS above the loaded model {mem.extra / 2**20:.0f} MiB = "
          f"{mem.extra / model_16bit:.2f}x the 16-bit model; whole process peak {mem.peak / 2**20:.0f} MiB\n"
          f"wiki-test ppl (4x256, RTN): AutoScheme {mixed:.2f} @ {mixed_bits:.3f} bits, uniform W2A16G32 {w2:.2f} @ "
          f"{w2_bits:.3f}, uniform W4A16G32 {w4:.2f} @ {w4_bits:.3f}")
    assert abs(mixed_bits - report.avg_bits) < 1e-6 and w2_bits < mixed_bits <= 3.0 < w4_bits
    assert w4 < mixed < w2
