"""Perplexity and KL divergence against hand computations on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ar_core.errors import DataError
from ar_eval import EvalProtocol, kl_divergence, perplexity, plan_windows
from ar_eval.windows import Window
from ar_export.testing import tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama(seed=0)


@pytest.fixture(scope="module")
def other():
    return tiny_llama(seed=3)


def test_plan_windows_non_overlapping_no_bos():
    w = plan_windows(10, EvalProtocol(seqlen=4))
    assert w == [Window(0, 4, 1), Window(4, 8, 5), Window(8, 10, 9)]


def test_plan_windows_bos_scores_every_token():
    w = plan_windows(10, EvalProtocol(seqlen=4, add_bos=True))
    assert w == [Window(0, 3, 0), Window(3, 6, 3), Window(6, 9, 6), Window(9, 10, 9)]


def test_plan_windows_sliding_scores_each_token_once():
    w = plan_windows(10, EvalProtocol(seqlen=4, stride=2))
    assert w == [Window(0, 4, 1), Window(2, 6, 4), Window(4, 8, 6), Window(6, 10, 8)]
    scored = [t for x in w for t in range(x.first_target, x.end)]
    assert scored == list(range(1, 10))


def test_plan_windows_max_windows_and_short_text():
    assert len(plan_windows(100, EvalProtocol(seqlen=8, max_windows=3))) == 3
    with pytest.raises(DataError, match="too short"):
        plan_windows(1, EvalProtocol(seqlen=8))


@pytest.mark.parametrize("kwargs", [dict(seqlen=1), dict(seqlen=8, stride=9), dict(seqlen=8, max_windows=0)])
def test_protocol_rejects_bad_values(kwargs):
    with pytest.raises(DataError):
        EvalProtocol(**kwargs)


def _hand_nll(model, chunks):
    """Sum of -log p(next token) over (input, first scored index) chunks, computed directly."""
    total, count = 0.0, 0
    with torch.no_grad():
        for inp, skip in chunks:
            logits = model(input_ids=inp.unsqueeze(0)).logits[0, :-1].float()
            nll = F.cross_entropy(logits, inp[1:], reduction="none")[skip:]
            total += nll.sum().item()
            count += len(nll)
    return total, count


def test_perplexity_matches_hand_computation(model, ids):
    res = perplexity(model, ids, EvalProtocol(seqlen=16))
    total, count = _hand_nll(model, [(ids[i:i + 16], 0) for i in range(0, 70, 16)])
    assert res.n_scored == count == 70 - 5
    assert res.n_windows == 5
    assert res.ppl == pytest.approx(math.exp(total / count), rel=1e-5)
    assert res.protocol == {"seqlen": 16, "stride": 16, "add_bos": False, "max_windows": None}


def test_perplexity_with_bos_matches_hand_computation(model, ids):
    bos = 7
    res = perplexity(model, ids, EvalProtocol(seqlen=16, add_bos=True, max_windows=2), bos_id=bos)
    chunks = [(torch.cat([torch.tensor([bos]), ids[i:i + 15]]), 0) for i in (0, 15)]
    total, count = _hand_nll(model, chunks)
    assert res.n_scored == count == 30
    assert res.ppl == pytest.approx(math.exp(total / count), rel=1e-5)


def test_perplexity_sliding_window_uses_overlap_as_context(model, ids):
    res = perplexity(model, ids[:32], EvalProtocol(seqlen=16, stride=8))
    chunks = [(ids[0:16], 0), (ids[8:24], 7), (ids[16:32], 7)]
    total, count = _hand_nll(model, chunks)
    assert res.n_scored == count == 31
    assert res.ppl == pytest.approx(math.exp(total / count), rel=1e-5)


def test_perplexity_requires_bos_id_with_add_bos(model, ids):
    with pytest.raises(ValueError, match="bos_id"):
        perplexity(model, ids, EvalProtocol(seqlen=16, add_bos=True))


def test_kl_of_model_with_itself_is_zero(model, ids):
    res = kl_divergence(model, model, ids, EvalProtocol(seqlen=16))
    assert res.kl_mean == pytest.approx(0.0, abs=1e-7)
    assert res.kl_max == pytest.approx(0.0, abs=1e-6)
    assert res.top1_agreement == 1.0
    assert res.ppl_quantized == pytest.approx(perplexity(model, ids, EvalProtocol(seqlen=16)).ppl, rel=1e-6)
    assert res.ppl_ratio == pytest.approx(1.0)


def test_kl_matches_hand_computation(model, other, ids):
    proto = EvalProtocol(seqlen=16, max_windows=2)
    res = kl_divergence(other, model, ids, proto)
    with torch.no_grad():
        kls, same = [], 0
        for i in (0, 16):
            lp = torch.log_softmax(model(input_ids=ids[None, i:i + 16]).logits[0, :-1].float(), -1)
            lq = torch.log_softmax(other(input_ids=ids[None, i:i + 16]).logits[0, :-1].float(), -1)
            kls.append(F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1))
            same += int((lp.argmax(-1) == lq.argmax(-1)).sum())
    kl = torch.cat(kls).double()
    assert res.n_scored == 30
    assert res.kl_mean == pytest.approx(kl.mean().item(), rel=1e-4)
    assert res.kl_p99 == pytest.approx(torch.quantile(kl, 0.99).item(), rel=1e-4)
    assert res.kl_max == pytest.approx(kl.max().item(), rel=1e-4)
    assert res.kl_mean > 0
    assert res.top1_agreement == pytest.approx(same / 30)
    assert res.kl_median <= res.kl_p99 <= res.kl_max
    assert res.to_dict()["ppl_ratio"] == pytest.approx(res.ppl_quantized / res.ppl_reference)
