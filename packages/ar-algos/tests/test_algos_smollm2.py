"""Real model: SmolLM2-135M at W2G32, whole model, short budget. Held-out perplexity SignRound < opt-RTN < RTN."""

import copy
import math

import pytest
import torch

from ar_algos import AutoRound

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from ar_algos.data import get_calibration_data
    from ar_algos.models import resolve_model
    from ar_core.corpora import corpus_text

    model, tok = resolve_model("smollm2-135m", dtype="float32")
    held_out = tok(corpus_text("wiki", "test")[:100_000], return_tensors="pt")["input_ids"][:, :512].reshape(2, 256)
    calib = get_calibration_data(tok, "wiki", nsamples=8, seqlen=128)
    return model, tok, held_out, calib


def _ppl(model, ids):
    with torch.no_grad():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


def test_signround_beats_opt_rtn_beats_rtn_at_w2g32(smollm2):
    base, tok, held_out, calib = smollm2
    ppl = {}
    for name, knobs in [("rtn", dict(recipe="rtn")), ("opt-rtn", dict(recipe="opt-rtn")),
                        ("signround", dict(iters=15))]:
        model = copy.deepcopy(base)
        AutoRound(model, tok, scheme="W2G32", dataset=calib, nsamples=8, seqlen=128, batch_size=4,
                  verbose=False, **knobs).quantize()
        ppl[name] = _ppl(model, held_out)
    fp = _ppl(base, held_out)
    assert fp < ppl["signround"] < ppl["opt-rtn"] < ppl["rtn"], (fp, ppl)
