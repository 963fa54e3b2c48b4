"""Real model: SmolLM2-135M at W2G32, W4G32 and W3G32, a short fixed budget (32 samples x 128 tokens, SignRound 30
iterations). Held-out perplexity (2048 wiki test tokens at W4/W3): SignRound < opt-RTN < RTN.

SignRound starts from the optimized-RTN scales (start_from_opt_rtn, the default). Measured on the whole model while
writing this (calibration seed 42, 8 x 256 held-out tokens): W4G32 RTN 32.2, opt-RTN 29.9, SignRound 29.4 (15
iterations); W3G32 RTN 79.5, opt-RTN 43.9, SignRound 40.3. With 8 samples and 15 iterations, or starting from plain
RTN, tuning over-fits the calibration text and loses to opt-RTN at W4/W3 (W4G32 33.1, W3G32 60.1 from RTN; W3G32 79.7
from opt-RTN).

CI budget: the claim is about the algorithms, so W3G32 quantizes only the first 8 of the 30 blocks (the others stay
16-bit; about a quarter of the whole model's time). Its margins are smaller than the whole model's: fp 25.95, RTN
33.33, opt-RTN 29.58, SignRound 28.48 (8 x 256 held-out tokens). Not every subset keeps the order: on the first 8
blocks at W4G32 opt-RTN loses to RTN (26.93 vs 26.69); on the last 8 (22-29) RTN 29.09 > opt-RTN 27.04 (SignRound
not yet measured there), so W4G32 and W2G32 still quantize the whole model.
"""

import copy
import math

import pytest
import torch

from ar_algos import AutoRound

pytestmark = pytest.mark.slow

# scheme -> (held-out windows of 256 tokens, blocks quantized: None for all 30). W2's gaps are wide; at W4 the gaps
# need 2048 tokens to be stable.
CASES = {"W2G32": (2, None), "W4G32": (8, None), "W3G32": (8, range(0, 8))}
NSAMPLES, ITERS, LAYERS = 32, 30, 30


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


def _subset(blocks):
    """AutoRound knobs that tune only `blocks` (one chain) and keep every other block 16-bit."""
    if blocks is None:
        return {}
    return dict(block_names=[f"model.layers.{i}" for i in blocks],
                ignore_layers=[f"layers.{i}" for i in range(LAYERS) if i not in blocks])


@pytest.mark.parametrize("scheme", list(CASES))
def test_signround_beats_opt_rtn_beats_rtn(smollm2, scheme):
    base, tok, held_out, calib = smollm2
    windows, blocks = CASES[scheme]
    held_out = held_out[:windows]
    ppl = {}
    for name, knobs in [("rtn", dict(recipe="rtn")), ("opt-rtn", dict(recipe="opt-rtn")),
                        ("signround", dict(iters=ITERS))]:
        model = copy.deepcopy(base)
        AutoRound(model, tok, scheme=scheme, dataset=calib, nsamples=NSAMPLES, seqlen=128, batch_size=4,
                  verbose=False, **_subset(blocks), **knobs).quantize()
        ppl[name] = _ppl(model, held_out)
    fp = _ppl(base, held_out)
    assert fp < ppl["signround"] < ppl["opt-rtn"] < ppl["rtn"], (fp, ppl)
