"""Steps of the consumer-table walk (tests/test_consumer_table.py on a tiny Llama; written to serve a SmolLM2 walk
too): quantize a preset once, write each format from that one
quantization, run one consumer subprocess (tests/consumer_runner.py) over all its folders, and compare the
consumer's logits with ours.

"Ours" is `ar_kernels.load` of the folder (float32; bfloat16 for schemes that quantize activations, the dtype both
their consumers compute in, with ar_kernels simulating the activation quantization the checkpoint declares), our
dequantized model for `fake` folders, and `ar_export.gguf.dequantized_state_dict` for GGUF files.

Tolerances (max |logit difference| against ours, as a fraction of our logit range):
    weight-only   2%: both sides multiply the same dequantized weights in float32 (fp16 kernels in gptqmodel and
                  auto-round's packed layers add rounding well below that).
    activations   2%: both run in bfloat16; the same codes, but a bf16 rounding difference before an activation
                  is quantized can flip that activation's code by one grid step.
and in both cases the difference must be smaller than quantization's own effect (ours against the float model), so
a consumer that ignored the quantization (or our simulation) would fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from ar_core.presets import PRESETS
from ar_export import get_writer

RUNNER = Path(__file__).with_name("consumer_runner.py")
TOLERANCE = 0.02


def folder(root: Path, fmt: str, preset: str, tag: str = "") -> Path:
    """The output folder of one (format, preset) pair under `root`."""
    return root / f"{tag}{fmt}__{preset.replace(':', '_')}"


def quantize(model, preset: str, **scheme) -> dict:
    """RTN records of every Linear but lm_head for `preset` (scheme fields in `scheme` override it); static
    activation schemes get an activation maximum of 6.0 per layer, as calibration would store."""
    from ar_export.testing import quantize_model

    q = quantize_model(model, {"scheme": preset, **scheme} if scheme else preset)
    for qt in q.values():
        qt.extras.setdefault("act_max", torch.tensor(6.0))
    return q


def gguf_rtn_tensors(model, mix: str, cache: dict) -> list:
    """The GGUF tensors of `mix` with plain RTN codes (no parameter search) for k-quant weights, as written by
    `write_tensors`; encodings are shared through `cache` across mixes that give a tensor the same type."""
    from ar_core.presets import gguf_scheme
    from ar_core.quant import quantize
    from ar_export.gguf.mix import K_TYPES
    from ar_export.gguf.writer import encode_tensor, plan_types

    out = []
    for spec, qtype in plan_types(model, mix):
        if (spec.gguf_name, qtype) not in cache:
            record = quantize(spec.tensor.detach().float(), gguf_scheme(qtype)) if qtype in K_TYPES else None
            cache[spec.gguf_name, qtype] = encode_tensor(spec, qtype, record, None)
        out.append(cache[spec.gguf_name, qtype])
    return out


def write(model, tok, fmt: str, preset: str, records: dict | None, out: Path, tensors: list | None = None) -> dict:
    """Save one pair into `out` (GGUF: `tensors` from export_tensors or gguf_rtn_tensors, by default the preset's
    mix quantized here; `records` unused) and return our side: {"model": reference model, "act": whether
    activations are quantized}."""
    from ar_export.testing import dequantized_copy

    if fmt == "gguf":
        from ar_export.gguf import dequantized_state_dict, export_tensors
        from ar_export.gguf.writer import write_tensors

        mix = PRESETS[preset].gguf
        tensors = tensors or export_tensors(model, mix)
        write_tensors(model, tok, out / "model.gguf", mix, tensors)
        ref = dequantized_copy(model, {})
        ref.load_state_dict(dequantized_state_dict(model, tensors))
        return {"model": ref, "act": False}
    get_writer(fmt).save(out, model, records, tokenizer=tok)
    if fmt == "fake":
        return {"model": dequantized_copy(model, records), "act": False}
    from ar_kernels import load

    act = PRESETS[preset].quantizes_activations
    if act:
        (out / "act_quant").touch()  # the runner loads these in bfloat16
    return {"model": load(out, dtype=torch.bfloat16 if act else torch.float32), "act": act}


def our_logits(ref: dict, ids: torch.Tensor) -> torch.Tensor:
    """Logits [1, T, vocab] float32 of our side of a pair (frees its model)."""
    with torch.no_grad():
        return ref.pop("model")(ids).logits.float()


def run_consumers(ids_path: Path, by_consumer: dict[str, list[Path]]) -> None:
    """One subprocess per consumer over all its folders (each writes FOLDER/<consumer>.pt); prints its seconds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TORCHDYNAMO_DISABLE": "1"}  # gptqmodel would torch.compile its CPU kernel per bit width (~1-2 min)
    for consumer, folders in by_consumer.items():
        start = time.time()
        done = subprocess.run([sys.executable, str(RUNNER), consumer, str(ids_path), *map(str, folders)],
                              capture_output=True, text=True, env=env, timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
        print(f"{consumer}: {len(folders)} folders in {time.time() - start:.0f} s")


def result(path: Path, consumer: str) -> dict:
    """What `consumer` computed on the folder `path` (see tests/consumer_runner.py)."""
    return torch.load(path / f"{consumer}.pt", weights_only=False)


def check(got: dict, ours: torch.Tensor, fp: torch.Tensor, what: str, tolerance: float = TOLERANCE) -> float:
    """Assert the consumer's logits match ours within `tolerance` of our logit range (module docstring); returns
    the error as a fraction of the range."""
    assert "error" not in got, f"{what}: {got.get('error')}"
    span = ours.abs().max().item()
    err = (got["logits"].float().reshape(ours.shape) - ours).abs().max().item()
    assert err <= tolerance * span, (what, err, span)
    assert err < (fp - ours).abs().max().item(), (what, err)  # below the quantization's own effect
    return err / span
