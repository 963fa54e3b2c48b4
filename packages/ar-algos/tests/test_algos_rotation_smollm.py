"""Rotation on SmolLM2-135M (fp32) through AutoRound: the calibrated per-linear Hadamard (rotation="hadamard")
lowers the wiki-test perplexity of plain RTN at W4G64 and W3G64 (numbers in benchmarks/README.md)."""

import copy
import math

import pytest
import torch

from ar_algos import AutoRound
from ar_algos.models import resolve_model
from ar_core.corpora import corpus_text

pytestmark = pytest.mark.slow
WINDOW, WINDOWS = 256, 4


@pytest.fixture(scope="module")
def smollm():
    model, tok = resolve_model("smollm2-135m", dtype="float32")
    ids = tok(corpus_text("wiki", "test")[:60_000], return_tensors="pt").input_ids[0]
    return model.eval(), tok, ids[: WINDOW * WINDOWS].reshape(WINDOWS, WINDOW)


def _ppl(model, windows):
    with torch.no_grad():
        logits = model(input_ids=windows).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    return math.exp(nll.item())


def _rtn_ppl(smollm, bits, rotation):
    model, tok, windows = smollm
    ar = AutoRound(copy.deepcopy(model), tok, bits=bits, group_size=64, recipe="rtn", rotation=rotation,
                   dataset="wiki", nsamples=4, seqlen=256, device="cpu", verbose=False)
    qmodel, _ = ar.quantize()
    return _ppl(qmodel, windows), ar.rotation_config


@pytest.mark.parametrize("bits", [4, 3])
def test_smollm2_calibrated_hadamard_beats_plain_rtn(smollm, bits):
    rtn, _ = _rtn_ppl(smollm, bits, None)
    rot, config = _rtn_ppl(smollm, bits, "hadamard")
    rotated = sum(len(e["layers"]) for e in config["online"])
    print(f"\nSmolLM2-135M W{bits}G64 wiki-test ppl ({WINDOWS}x{WINDOW} tokens): RTN {rtn:.3f}  "
          f"calibrated Hadamard + RTN {rot:.3f} ({rotated}/210 linears rotated)")
    assert 0 < rotated < 210
    assert rot < rtn
