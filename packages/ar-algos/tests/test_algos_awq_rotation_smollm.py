"""AWQ and rotation on SmolLM2-135M (fp32): wiki-test perplexity of W4G64 RTN, AWQ+RTN and rotation+RTN; AWQ
beats plain RTN at W4G64 and W3G64."""

import copy
import math

import pytest
import torch

from ar_algos.awq import awq_block
from ar_algos.blocks import find_blocks, find_linears, get_module
from ar_algos.capture import capture_block_inputs, forward_all
from ar_algos.models import resolve_model
from ar_algos.rotation import rotate_model
from ar_algos.rtn import rtn_layers
from ar_core.corpora import corpus_text
from ar_core.scheme import QuantScheme

pytestmark = pytest.mark.slow
SCHEME = QuantScheme(bits=4, group_size=64)
WINDOW, WINDOWS = 256, 4


@pytest.fixture(scope="module")
def smollm():
    torch.manual_seed(0)
    model, tok = resolve_model("smollm2-135m", dtype="float32")
    test_ids = tok(corpus_text("wiki", "test")[:60_000], return_tensors="pt").input_ids[0]
    train_ids = tok(corpus_text("wiki", "train")[:60_000], return_tensors="pt").input_ids[0]
    evals = test_ids[: WINDOW * WINDOWS].reshape(WINDOWS, WINDOW)
    calib = [{"input_ids": train_ids[i * 128:(i + 1) * 128][None],
              "attention_mask": torch.ones(1, 128, dtype=torch.long)} for i in range(2)]
    return model.eval(), evals, calib


def _ppl(model, windows):
    with torch.no_grad():
        logits = model(input_ids=windows).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    return math.exp(nll.item())


def _rtn(model, scheme=SCHEME):
    for b in find_blocks(model):
        layers = find_linears(get_module(model, b))
        rtn_layers(layers, {n: scheme for n in layers})
    return model


def _awq(model, calib, scheme=SCHEME):
    blocks = find_blocks(model)
    inputs = capture_block_inputs(model, blocks, calib)
    hidden = inputs.hidden
    for i, name in enumerate(blocks):
        block = get_module(model, name)
        schemes = {n: scheme for n in find_linears(block)}
        awq_block(block, hidden, lambda idx, i=i: inputs.kwargs(i, idx), schemes, n_grid=8, batch_size=2)
        hidden = forward_all(block, inputs, i, hidden, batch_size=2)
    return model


def test_smollm2_w4g64_rtn_awq_rotation_perplexity(smollm):
    model, evals, calib = smollm
    fp = _ppl(model, evals)
    rtn = _ppl(_rtn(copy.deepcopy(model)), evals)
    awq_model = _awq(copy.deepcopy(model), calib)
    awq_fp = _ppl(awq_model, evals)
    awq = _ppl(_rtn(awq_model), evals)
    rotated = copy.deepcopy(model)
    rotate_model(rotated, "r1r2")
    rot_fp = _ppl(rotated, evals)
    rot = _ppl(_rtn(rotated), evals)
    print(f"\nSmolLM2-135M wiki-test ppl ({WINDOWS}x{WINDOW} tokens): fp {fp:.3f}  W4G64 RTN {rtn:.3f}  "
          f"AWQ+RTN {awq:.3f} (AWQ fp {awq_fp:.3f})  R1R2+RTN {rot:.3f} (rotated fp {rot_fp:.3f})")
    assert abs(rot_fp / fp - 1) < 0.005
    assert abs(awq_fp / fp - 1) < 0.005
    assert fp < rtn < 2 * fp and awq < 2 * fp and rot < 2 * fp
    assert awq < rtn


def test_smollm2_w3g64_awq_beats_rtn(smollm):
    model, evals, calib = smollm
    w3 = QuantScheme(bits=3, group_size=64)
    rtn = _ppl(_rtn(copy.deepcopy(model), w3), evals)
    awq = _ppl(_rtn(_awq(copy.deepcopy(model), calib, w3), w3), evals)
    print(f"\nSmolLM2-135M wiki-test ppl ({WINDOWS}x{WINDOW} tokens): W3G64 RTN {rtn:.3f}  AWQ+RTN {awq:.3f}")
    assert awq < 0.9 * rtn
