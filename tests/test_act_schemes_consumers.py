"""Schemes that quantize activations, end to end: AutoRound (RTN, calibrated activation maxima) -> export -> the
format's real consumer in a separate process (compressed-tensors through transformers; auto-round's loader) ->
logits compared with `ar_kernels.load`, which simulates the same activation quantization.

Tolerance: max |logit difference| <= 1% of the consumer's logit range, in bf16 (the dtype both consumers compute
in; compressed-tensors cannot decompress NVFP4 into float32). Measured on this tiny Llama: 0.0 for every pair. The
same checkpoint without our activation simulation is off by 3-35% of the range, so the check sees the simulation.
"""

import json
import subprocess
import sys

import pytest
import torch

from ar_algos import AutoRound
from ar_export.testing import calibration_texts, tiny_llama, tiny_tokenizer
from ar_kernels import load

pytestmark = pytest.mark.slow
CONSUMER = """
import sys, torch
from transformers import AutoModelForCausalLM
path, ids_file, out_file = sys.argv[1:4]
kw = {}
if sys.argv[4] == "auto_round":
    from transformers import AutoRoundConfig
    kw["quantization_config"] = AutoRoundConfig()
lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cpu", **kw).eval()
print(type(lm.model.layers[0].mlp.down_proj).__name__)
with torch.no_grad():
    torch.save(lm(torch.load(ids_file)).logits.float(), out_file)
"""


def _consumer_logits(path, ids, fmt, tmp_path):
    torch.save(ids, tmp_path / "ids.pt")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    import os

    run = subprocess.run([sys.executable, "-c", CONSUMER, str(path), str(tmp_path / "ids.pt"),
                          str(tmp_path / "logits.pt"), fmt], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-3000:]
    return torch.load(tmp_path / "logits.pt"), run.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("scheme,fmt,module", [
    ("NVFP4", "llm_compressor", "Linear"), ("FP8_STATIC", "llm_compressor", "Linear"),
    ("INT8_W8A8", "llm_compressor", "Linear"),
    ("NVFP4", "auto_round", "NVFP4QuantLinear"), ("FP8_STATIC", "auto_round", "WeightFP8ActFP8StaticQuantLinear"),
])
def test_activation_schemes_match_their_consumer(tmp_path, scheme, fmt, module):
    tok = tiny_tokenizer()
    out = tmp_path / "ckpt"
    AutoRound(tiny_llama(), tokenizer=tok, scheme=scheme, recipe="rtn", nsamples=4, seqlen=32,
              verbose=False).quantize_and_save(out, format=fmt)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == ("compressed-tensors" if fmt == "llm_compressor" else "auto-round")
    ids = tok(calibration_texts(2)[1], return_tensors="pt").input_ids[:, :40]
    theirs, their_module = _consumer_logits(out, ids, fmt, tmp_path)
    assert their_module == module  # compressed-tensors wraps nn.Linear with its quantized forward
    ours = load(out, dtype=torch.bfloat16)
    with torch.no_grad():
        got = ours(ids).logits.float()
        for m in ours.modules():
            if getattr(m, "input_quant", None) is not None:
                m.input_quant = None
        unsimulated = ours(ids).logits.float()
    span = theirs.abs().max().item()
    err = (got - theirs).abs().max().item()
    assert err <= 0.01 * span, (err, span)
    assert (unsimulated - theirs).abs().max().item() > 2 * max(err, 0.01 * span)
