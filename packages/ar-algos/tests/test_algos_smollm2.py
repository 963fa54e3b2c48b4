"""Real model: SmolLM2-135M at W2G32, W4G32 and W3G32, whole model, a short fixed budget (32 samples x 128 tokens,
SignRound 30 iterations). Held-out perplexity (2048 wiki test tokens at W4/W3): SignRound < opt-RTN < RTN.

SignRound starts from the optimized-RTN scales (start_from_opt_rtn, the default). Measured while writing this
(calibration seed 42, 8 x 256 held-out tokens): W4G32 RTN 32.2, opt-RTN 29.9, SignRound 29.4 (15 iterations);
W3G32 RTN 79.5, opt-RTN 43.9, SignRound 40.3. With 8 samples and 15 iterations, or starting from plain RTN, tuning
over-fits the calibration text and loses to opt-RTN at W4/W3 (W4G32 33.1, W3G32 60.1 from RTN; W3G32 79.7 from
opt-RTN).
"""

import copy
import math

import pytest
import torch

from ar_algos import AutoRound

pytestmark = pytest.mark.slow

# scheme -> held-out windows of 256 tokens (W2's gaps are wide; at W4 the gaps need 2048 tokens to be stable)
WINDOWS = {"W2G32": 2, "W4G32": 8, "W3G32": 8}
NSAMPLES, ITERS = 32, 30


@pytest.fixture(scope="module")
def smollm2():
    from ar_algos.data import get_calibration_data
    from ar_algos.models import resolve_model
    from ar_core.corpora import corpus_text

    model, tok = resolve_model("smollm2-135m", dtype="float32")
    held_out = tok(corpus_text("wiki", "test")[:100_000], return_tensors="pt")["input_ids"][:, :2048].reshape(8, 256)
    calib = get_calibration_data(tok, "wiki", nsamples=NSAMPLES, seqlen=128)
    return model, tok, held_out, calib


def _ppl(model, ids):
    with torch.no_grad():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


@pytest.mark.parametrize("scheme", list(WINDOWS))
def test_signround_beats_opt_rtn_beats_rtn(smollm2, scheme):
    base, tok, held_out, calib = smollm2
    held_out = held_out[:WINDOWS[scheme]]
    ppl = {}
    for name, knobs in [("rtn", dict(recipe="rtn")), ("opt-rtn", dict(recipe="opt-rtn")),
                        ("signround", dict(iters=ITERS))]:
        model = copy.deepcopy(base)
        AutoRound(model, tok, scheme=scheme, dataset=calib, nsamples=NSAMPLES, seqlen=128, batch_size=4,
                  verbose=False, **knobs).quantize()
        ppl[name] = _ppl(model, held_out)
    fp = _ppl(base, held_out)
    assert fp < ppl["signround"] < ppl["opt-rtn"] < ppl["rtn"], (fp, ppl)
