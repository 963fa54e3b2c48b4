"""The real SmolLM2-135M, RTN W4A16 group 32, exported by every int writer and loaded by its real consumer.

Each consumer's logits on one ~32-token prompt equal those of our own dequantized model within fp16 compute rounding:
max |diff| under 2% of the logit range and the same top-1 token on at least 99% of positions. The random tiny-model
proofs live in test_export_consumers.py; this file proves the same formats on real weights (30 layers, GQA 9/3,
hidden 576, tied embeddings: lm_head stays unquantized).
"""

import os

import numpy as np
import pytest
import torch

from ar_export import get_writer
from ar_export.testing import dequantized_copy, quantize_model

pytestmark = [pytest.mark.slow, pytest.mark.consumers]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEXT = ("The history of the Roman Empire is often divided into four eras, and the early empire was ruled by "
        "Augustus, who reformed the army, the coinage and the government of the provinces.")
SYM = {"scheme": "W4A16", "group_size": 32}
ASYM = {**SYM, "sym": False}  # AWQ stores raw zero points


@pytest.fixture(scope="module")
def smollm2():
    """(model, tokenizer, ids [1, 32]) of the real SmolLM2-135M in float32."""
    models = pytest.importorskip("ar_algos.models")
    model, tok = models.resolve_model("smollm2-135m", dtype="float32")
    ids = tok(TEXT, return_tensors="pt").input_ids[:, :32]
    assert ids.shape[1] == 32
    return model.eval(), tok, ids


def _records(smollm2, scheme):
    """RTN records of every Linear but the tied lm_head, the logits [32, vocab] of our dequantized model and how far
    quantization itself moved them from the float model's."""
    model, _, ids = smollm2
    q = quantize_model(model, scheme)
    assert len(q) == 30 * 7 and not any("lm_head" in n for n in q)
    with torch.no_grad():
        ref = dequantized_copy(model, q)(ids).logits[0].float()
        shift = (model(ids).logits[0].float() - ref).abs().max().item()
    return q, ref, shift


@pytest.fixture(scope="module")
def sym(smollm2):
    """Records and reference logits for symmetric W4A16 g32, shared by four formats."""
    return _records(smollm2, SYM)


@pytest.fixture(scope="module")
def asym(smollm2):
    """Records and reference logits for asymmetric W4A16 g32 (AWQ)."""
    return _records(smollm2, ASYM)


def _export(tmp_path, smollm2, fmt, records):
    model, tok, _ = smollm2
    return get_writer(fmt).save(tmp_path / fmt, model, records[0], tokenizer=tok), records[1:]


def _check(logits, expected, fmt):
    """Consumer logits [seq, vocab] equal ours (`expected` = our logits, quantization shift) within fp16 rounding,
    far below the quantization error; prints the measured agreement."""
    ref, shift = expected
    logits = logits.reshape(ref.shape).float()
    err = (logits - ref).abs().max().item()
    span = (ref.max() - ref.min()).item()
    top1 = (logits.argmax(-1) == ref.argmax(-1)).float().mean().item()
    print(f"{fmt}: max|diff|={err:.4g} range={span:.4g} ratio={err / span:.3g} top1={top1:.4f} quant shift={shift:.4g}")
    assert err < 2e-2 * span, (fmt, err, span)
    assert top1 >= 0.99, (fmt, top1)
    assert err < 0.25 * shift, (fmt, err, shift)


def _load_hf(path, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, device_map="cpu", **kw).eval()


def _hf_logits(lm, ids):
    with torch.no_grad():
        return lm(ids).logits


def test_auto_round_loads_in_transformers_with_auto_round(tmp_path, smollm2, sym):
    pytest.importorskip("auto_round")
    out, expected = _export(tmp_path, smollm2, "auto_round", sym)
    lm = _load_hf(out)
    assert type(lm.model.layers[0].self_attn.q_proj) is not torch.nn.Linear
    _check(_hf_logits(lm, smollm2[2]), expected, "auto_round")


def test_auto_gptq_loads_through_gptqmodel(tmp_path, smollm2, sym):
    pytest.importorskip("gptqmodel")
    pytest.importorskip("optimum")
    out, expected = _export(tmp_path, smollm2, "auto_gptq", sym)
    lm = _load_hf(out)
    assert type(lm.model.layers[0].mlp.up_proj).__module__.startswith("gptqmodel")
    _check(_hf_logits(lm, smollm2[2]), expected, "auto_gptq")


def test_auto_awq_loads_through_gptqmodel(tmp_path, smollm2, asym):
    pytest.importorskip("gptqmodel")
    out, expected = _export(tmp_path, smollm2, "auto_awq", asym)
    lm = _load_hf(out)
    assert "Awq" in type(lm.model.layers[0].mlp.up_proj).__name__
    _check(_hf_logits(lm, smollm2[2]), expected, "auto_awq")


def test_llm_compressor_loads_with_compressed_tensors(tmp_path, smollm2, sym):
    pytest.importorskip("compressed_tensors")
    out, expected = _export(tmp_path, smollm2, "llm_compressor", sym)
    lm = _load_hf(out)
    assert hasattr(lm.model.layers[0].self_attn.q_proj, "quantization_scheme")
    _check(_hf_logits(lm, smollm2[2]), expected, "llm_compressor")


def test_mlx_loads_in_mlx_lm(tmp_path, smollm2, sym):
    mx = pytest.importorskip("mlx.core")
    mlx_lm = pytest.importorskip("mlx_lm")
    out, expected = _export(tmp_path, smollm2, "mlx", sym)
    model, _ = mlx_lm.load(str(out))
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "QuantizedLinear"
    # mlx-lm's llama reads only a top-level rope_theta (default 1e4); SmolLM2 keeps 1e5 in rope_parameters
    assert model.args.rope_theta == smollm2[0].config.rope_parameters["rope_theta"]
    logits = model(mx.array(smollm2[2].numpy())).astype(mx.float32)
    _check(torch.from_numpy(np.array(logits)), expected, "mlx")
