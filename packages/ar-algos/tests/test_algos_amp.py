"""Mixed precision (`amp`): which devices autocast to bf16, and which passes run under it."""

import pytest
import torch

from ar_algos import AutoRound, signround
from ar_algos.tiny import random_samples, tiny_model


@pytest.mark.parametrize("capability, flags, expected", [
    ("AVX512", True, True), ("AVX512", False, False), ("AVX2", True, False), ("DEFAULT", False, False)])
def test_cpu_autocasts_only_with_native_bf16(monkeypatch, capability, flags, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(signround, "_cpu_has_fast_bf16", lambda: flags)
    assert signround.fast_bf16(torch.device("cpu")) is expected
    assert signround.fast_bf16(torch.device("meta")) is False


def test_cuda_always_autocasts():
    assert signround.fast_bf16(torch.device("cuda")) is True


def _autocast_dtypes(monkeypatch, fast: bool) -> list:
    monkeypatch.setattr(signround, "fast_bf16", lambda device: fast)
    calls = []
    real = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **kw: calls.append(kw["dtype"]) or real(*a, **kw))
    return calls


@pytest.mark.parametrize("fast, amp", [(True, True), (True, False), (False, True)])
def test_opt_rtn_passes_autocast_only_with_amp_on_fast_bf16(monkeypatch, fast, amp):
    calls = _autocast_dtypes(monkeypatch, fast)
    model = tiny_model("llama", num_hidden_layers=2)
    _, records = AutoRound(model, scheme="W4G32", dataset=random_samples(4, 8), nsamples=4, seqlen=8, batch_size=2,
                           iters=0, amp=amp, verbose=False).quantize()
    assert calls == ([torch.bfloat16] * 4 if fast and amp else [])  # two passes per block
    assert records and all(torch.isfinite(r.scale).all() for r in records.values())


def test_signround_steps_stay_float32_on_cpu_even_with_fast_bf16(monkeypatch):
    calls = _autocast_dtypes(monkeypatch, True)
    assert signround.tunes_in_bf16(torch.device("cuda")) and not signround.tunes_in_bf16(torch.device("cpu"))
    AutoRound(tiny_model("llama", num_hidden_layers=1), scheme="W4G32", dataset=random_samples(4, 8), nsamples=4,
              seqlen=8, batch_size=2, iters=2, verbose=False).quantize()
    assert calls == []
