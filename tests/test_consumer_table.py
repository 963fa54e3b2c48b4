"""Every "yes" of the capability table (ar_export.capabilities) loaded by its real consumer in a separate process.

For each format x preset pair docs/formats.md lists, a tiny random Llama (hidden 256, MLP 512, 2 layers) is
RTN-quantized (ar_export.testing, activation maxima set to 6.0 for the static schemes) and saved; one subprocess per
consumer (tests/consumer_runner.py) loads all its folders and saves logits. The consumer's logits must equal our
own within 2% of the logit range and sit closer to ours than the float model's do, where "ours" is `ar_kernels.load`
of the folder (for `fake` folders our dequantized model, for GGUF files `ar_export.gguf.dequantized_state_dict`).
Schemes that quantize activations (MX, NVFP4, FP8_STATIC, INT8_W8A8) compare each layer's dequantized weight in
the consumer with our record instead (atol 2^-7 of the layer's range), as `ar_kernels.load` does not yet simulate
activation quantization. vLLM and llama.cpp entries are declared, not run. Row 4 of issue 17: a group size that
does not divide in_features is a per-layer "no" for auto-round, gptqmodel and compressed-tensors, each of which fails
on such a checkpoint here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ar_core.presets import PRESETS
from ar_export import consumer_matrix, get_writer, register_all
from ar_export.capabilities import DECLARED, verdicts

pytestmark = pytest.mark.slow
RUNNER = Path(__file__).with_name("consumer_runner.py")
NARROW = dict(intermediate_size=320)  # down_proj in_features 320: 128 does not divide it


def _yes_pairs() -> list[tuple[str, str, str]]:
    register_all()
    return [(fmt, p, c) for fmt, row in consumer_matrix().items() for p, cs in row.items() if cs
            for c in cs if c not in DECLARED]


YES = _yes_pairs()
NARROW_RUNS = [("auto_round", "auto-round", False), ("auto_gptq", "auto-round", False),
               ("auto_gptq", "gptqmodel", False), ("llm_compressor", "compressed-tensors", False)]


def _folder(root: Path, fmt: str, preset: str, narrow: bool = False) -> Path:
    return root / f"{'narrow_' * narrow}{fmt}__{preset.replace(':', '_')}"


def _save(model, tok, fmt: str, preset: str, out: Path) -> dict:
    """Quantize and save one pair; returns our reference: {"logits"} or {"records"} (activation-quantized)."""
    from ar_export.testing import dequantized_copy, quantize_model

    if fmt == "gguf":
        from ar_export.gguf import dequantized_state_dict, export_tensors
        from ar_export.gguf.writer import write_tensors

        mix = PRESETS[preset].gguf
        tensors = export_tensors(model, mix)
        write_tensors(model, tok, out / "tiny.gguf", mix, tensors)
        ref = dequantized_copy(model, {})
        ref.load_state_dict(dequantized_state_dict(model, tensors))
        return {"model": ref}
    q = quantize_model(model, preset)
    for qt in q.values():
        qt.extras.setdefault("act_max", torch.tensor(6.0))  # static activation schemes need a calibrated max
    get_writer(fmt).save(out, model, q, tokenizer=tok)
    if fmt == "fake":
        return {"model": dequantized_copy(model, q)}
    if PRESETS[preset].quantizes_activations:
        (out / "act_quant").touch()  # the runner loads these in bfloat16
        return {"records": q}
    from ar_kernels import load

    return {"model": load(out)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{(folder, consumer): what the consumer computed} plus our references, for every "yes" and row-4 run."""
    from ar_export.testing import calibration_texts, tiny_llama, tiny_tokenizer

    root = tmp_path_factory.mktemp("table")
    model, tok = tiny_llama(), tiny_tokenizer()
    ids = tok(calibration_texts(1)[0], return_tensors="pt").input_ids[:, :40]
    torch.save(ids, root / "ids.pt")
    refs, by_consumer = {}, {}
    for fmt, preset, consumer in YES:
        folder = _folder(root, fmt, preset)
        if folder not in refs:
            refs[folder] = _save(model, tok, fmt, preset, folder)
        by_consumer.setdefault(consumer, []).append(folder)
    narrow = tiny_llama(**NARROW)
    for fmt, consumer, _ in NARROW_RUNS:
        folder = _folder(root, fmt, "W4A16", narrow=True)
        if folder not in refs:
            refs[folder] = _save(narrow, tok, fmt, "W4A16", folder)
        by_consumer.setdefault(consumer, []).append(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TORCHDYNAMO_DISABLE": "1"}  # gptqmodel would torch.compile its CPU kernel per bit width (~1-2 min)
    for consumer, folders in by_consumer.items():
        done = subprocess.run([sys.executable, str(RUNNER), consumer, str(root / "ids.pt"), *map(str, folders)],
                              capture_output=True, text=True, env=env, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    with torch.no_grad():
        fp = {False: model(ids).logits.float(), True: narrow(ids).logits.float()}
        for r in refs.values():
            if "model" in r:
                r["logits"] = r.pop("model")(ids).logits.float()
    return root, refs, fp


def _result(folder: Path, consumer: str) -> dict:
    return torch.load(folder / f"{consumer}.pt", weights_only=False)


# compressed-tensors loads these, but reading the fp4 weights back (decompress_module) raises KeyError 'weight_packed'
FP4_READBACK = pytest.mark.xfail(strict=False, reason="fp4 weight read-back in compressed-tensors: KeyError "
                                 "'weight_packed' (the load itself succeeds); h-actq may compare logits instead")
PARAMS = [pytest.param(f, p, c, id=f"{f}-{p}-{c}",
                       marks=[FP4_READBACK] if (f, c) == ("llm_compressor", "compressed-tensors")
                       and p in ("MXFP4", "MXFP4_RCEIL", "NVFP4") else [])
          for f, p, c in YES]


@pytest.mark.parametrize("fmt,preset,consumer", PARAMS)
def test_every_yes_loads_in_its_consumer(runs, fmt, preset, consumer):
    root, refs, fp = runs
    folder = _folder(root, fmt, preset)
    got, ref = _result(folder, consumer), refs[folder]
    assert "error" not in got, f"{consumer} on {fmt} {preset}: {got.get('error')}"
    if "records" in ref:
        assert got["weights"], f"{consumer} exposes no dequantized weight"
        for name, qt in ref["records"].items():
            ours = qt.dequantize()
            torch.testing.assert_close(got["weights"][name], ours, rtol=0, atol=2.0**-7 * ours.abs().max().item())
        return
    err = (got["logits"].float() - ref["logits"]).abs().max().item()
    assert err <= 0.02 * ref["logits"].abs().max().item(), (err, ref["logits"].abs().max().item())
    assert err < (fp[False] - ref["logits"]).abs().max().item()  # far below the quantization error itself


@pytest.mark.parametrize("fmt,consumer,loads", NARROW_RUNS, ids=[f"{f}-{c}" for f, c, _ in NARROW_RUNS])
def test_group_that_does_not_divide_in_features_matches_the_table(runs, fmt, consumer, loads):
    """auto-round, gptqmodel and compressed-tensors fail on down_proj (in 320, group 128), as the table says per
    layer (`loads` stays a parameter so a consumer that learns these shapes flips one entry)."""
    root, refs, fp = runs
    from ar_core.presets import parse_scheme

    from ar_export.testing import tiny_llama

    folder = _folder(root, fmt, "W4A16", narrow=True)
    got = _result(folder, consumer)
    linears = {n: m.in_features for n, m in tiny_llama(**NARROW).named_modules()
               if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
    ok, why = verdicts(get_writer(fmt).name, {n: parse_scheme("W4A16") for n in linears}, linears)[consumer]
    assert ok is loads and ("error" not in got) is loads, (why, got.get("error"))
    if loads:
        err = (got["logits"] - refs[folder]["logits"]).abs().max().item()
        assert err <= 0.02 * refs[folder]["logits"].abs().max().item()
    else:
        assert "mlp.down_proj in_features 320 % group_size 128 = 64" in why
