"""AutoScheme on a real model (SmolLM2-135M): the 3.0-bit budget holds and the search stays in bounded memory."""

from __future__ import annotations

import os
import threading
import time

import pytest

from ar_algos.autoscheme import AutoScheme
from ar_algos.autoscheme.scores import layer_scores
from ar_algos.blocks import find_linears
from ar_algos.tiny import random_samples

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


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to read resident memory")
def test_smollm2_at_3_bits_stays_within_budget_and_memory():
    from ar_algos.data import get_calibration_data
    from ar_algos.models import resolve_model

    model, tokenizer = resolve_model("smollm2-135m")
    samples = get_calibration_data(tokenizer, None, nsamples=8, seqlen=128)
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
