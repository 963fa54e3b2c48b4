"""AWQ wired into AutoRound: algorithm="awq" (AWQ + RTN), "awq,auto_round" (AWQ + SignRound), the awq knobs."""

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from ar_algos import AutoRound
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError
from ar_core.registry import ALGORITHMS

ARGS = dict(scheme="W3G32", nsamples=4, seqlen=16, batch_size=2, verbose=False)


def _model():
    """Tiny Llama whose norms make a few activation channels 30x larger (the outliers AWQ exists for)."""
    model = tiny_model("llama")
    with torch.no_grad():
        for layer in model.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[:4] *= 30.0
    return model


def _logit_error(reference, model, samples):
    with torch.no_grad():
        return sum(float((model(**s).logits - reference(**s).logits).pow(2).mean()) for s in samples)


def test_awq_rtn_applies_scales_and_beats_plain_rtn():
    samples = random_samples(4, 16)
    reference = _model()
    awq = AutoRound(_model(), algorithm="awq", dataset=samples, **ARGS)
    assert awq.cfg.awq and awq.cfg.algorithm == "rtn" and awq.cfg.iters == 0
    awq_model, awq_records = awq.quantize()
    rtn_model, rtn_records = AutoRound(_model(), recipe="rtn", **ARGS).quantize()
    assert awq_records.keys() == rtn_records.keys()
    name = "model.layers.0.mlp.up_proj"
    assert not torch.equal(awq_records[name].dequantize(), rtn_records[name].dequantize())
    norm = awq_model.model.layers[0].post_attention_layernorm.weight  # the scales were folded into it
    assert not torch.allclose(norm, reference.model.layers[0].post_attention_layernorm.weight)
    assert _logit_error(reference, awq_model, samples) < _logit_error(reference, rtn_model, samples)


def test_awq_signround_runs_and_tunes(tmp_path):
    ar = AutoRound(_model(), algorithm="awq,auto_round", dataset=random_samples(4, 16), iters=2, **ARGS)
    assert ar.cfg.awq and ar.cfg.algorithm == "signround"
    model, records = ar.quantize(tmp_path / "work")
    assert not (tmp_path / "work").exists()  # no checkpoints: block records would miss the scales in the norms
    assert len(records) == 14 and all(torch.isfinite(r.dequantize()).all() for r in records.values())
    norm = model.model.layers[1].input_layernorm.weight
    assert not torch.allclose(norm, _model().model.layers[1].input_layernorm.weight)


def test_awq_knob_and_registry():
    ar = AutoRound(tiny_model("llama"), recipe="rtn", awq=True, awq_n_grid=4, awq_duo_scaling="both",
                   dataset=random_samples(2, 16), **{**ARGS, "nsamples": 2})
    assert ar.cfg.awq and ar.cfg.calibrated and ar._samples() is not None
    assert ALGORITHMS.get("awq")(tiny_model("llama"), dataset=random_samples(2, 8), seqlen=8, verbose=False).cfg.awq


def test_awq_turns_model_free_off(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path)
    vocab = Tokenizer(WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    PreTrainedTokenizerFast(tokenizer_object=vocab).save_pretrained(tmp_path)
    assert AutoRound(str(tmp_path), recipe="rtn", verbose=False).model_free_dir == tmp_path
    ar = AutoRound(str(tmp_path), algorithm="awq", dataset=random_samples(2, 8), seqlen=8, verbose=False)
    assert ar.model_free_dir is None and ar.model is not None


@pytest.mark.parametrize("kwargs, field", [
    (dict(algorithm="awq", iters=5), "iters"),
    (dict(algorithm="awq,auto_round", iters=0), "iters"),
    (dict(algorithm="awq", disable_opt_rtn=False), "disable_opt_rtn"),
    (dict(algorithm="gptq"), "algorithm"),
    (dict(awq_n_grid=1), "awq_n_grid"),
    (dict(awq_duo_scaling="sometimes"), "awq_duo_scaling"),
    (dict(awq_clip="yes"), "awq_clip"),
])
def test_awq_bad_options_name_the_field(kwargs, field):
    with pytest.raises(ArError, match=field):
        AutoRound(tiny_model("llama"), dataset=random_samples(2, 8), verbose=False, **kwargs)
