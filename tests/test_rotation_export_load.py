"""Rotation through AutoRound, the exports and ar_kernels.load: foldable rotations (r1, r2) live in the weights, so
their checkpoints reload (in ar_kernels.load and in auto-round) with logits matching our own rotated model; rotations
that leave online Hadamards, which no consumer re-inserts, are refused before any work."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ar_algos import AutoRound
from ar_core.errors import ArError
from ar_export.testing import tiny_llama
from ar_kernels import load

TOKENS = torch.randint(0, 384, (2, 16), generator=torch.Generator().manual_seed(0))
SAMPLES = [{"input_ids": torch.randint(0, 384, (1, 32), generator=torch.Generator().manual_seed(i))} for i in range(4)]


def _logits(model):
    with torch.no_grad():
        return model(input_ids=TOKENS).logits


def _outlier_llama():
    """tiny_llama with a few large weights per linear, which a Hadamard rotation spreads (so the calibrated
    selection rotates them)."""
    model = tiny_llama()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layers" in name and p.dim() == 2:
                p.view(-1)[torch.randint(0, p.numel(), (p.shape[0] // 4,), generator=g)] *= 30
    return model


def _online(model) -> int:
    return sum(hasattr(m, "online_rotation") for m in model.modules())


@pytest.mark.parametrize("rotation,fmt", [("r1", "auto_round"), ("r1r2", "auto_round"), ("r2", "auto_gptq")])
def test_foldable_rotation_reloads_without_online_rotations(tmp_path, rotation, fmt):
    model = _outlier_llama()
    ref_fp = _logits(model)
    ar = AutoRound(model, scheme="W4A16", group_size=64, recipe="rtn", rotation=rotation, verbose=False)
    qmodel, [path] = ar.quantize_and_save(tmp_path / "q", format=fmt)
    qc = json.loads((path / "config.json").read_text())["quantization_config"]
    assert "rotation_config" not in qc and ar.rotation_config["online"] == []  # the weights hold it all
    loaded = load(path, dtype=torch.float32)
    assert _online(loaded) == _online(qmodel) == 0
    ours = _logits(qmodel)
    assert not torch.allclose(ours, ref_fp, atol=1e-3)  # really quantized
    tol = 2e-3 if fmt == "auto_round" else 1e-2  # GPTQ stores the float tensors and scales in fp16
    torch.testing.assert_close(_logits(loaded), ours, atol=tol, rtol=tol)


_AUTO_ROUND_LOGITS = """
import sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, device_map="cpu").eval()
assert type(model.model.layers[0].mlp.down_proj).__module__.startswith("auto_round"), type(model.model.layers[0])
with torch.no_grad():
    torch.save(model(input_ids=torch.load(sys.argv[2])).logits, sys.argv[3])
"""


@pytest.mark.slow
def test_r1_auto_round_checkpoint_loads_in_auto_round(tmp_path):
    """The reference's loader, in its own process, runs an r1-rotated auto_round checkpoint like ar_kernels.load."""
    model = _outlier_llama()
    ref_fp = _logits(model)
    ar = AutoRound(model, scheme="W4A16", group_size=64, recipe="rtn", rotation="r1", verbose=False)
    _, [path] = ar.quantize_and_save(tmp_path / "q", format="auto_round")
    torch.save(TOKENS, tmp_path / "tokens.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _AUTO_ROUND_LOGITS, str(path), str(tmp_path / "tokens.pt"),
                           str(tmp_path / "logits.pt")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs, ours = torch.load(tmp_path / "logits.pt").float(), _logits(load(path, dtype=torch.float32))
    err = (theirs - ours).abs().max().item()  # auto-round computes in fp16 on CPU
    assert err <= 0.01 * ours.abs().max().item() and err < 0.1 * (ours - ref_fp).abs().max().item(), err


@pytest.mark.parametrize("rotation,fmt", [("hadamard", "auto_round"), ("r1r2r4", "auto_round"),
                                          ("block", "auto_gptq"), ({"mode": "block", "block_size": 32}, "fake")])
def test_rotations_with_online_hadamards_are_refused_before_work(tmp_path, rotation, fmt):
    ar = AutoRound(tiny_llama(), scheme="W4A16", group_size=64, recipe="rtn", rotation=rotation, samples=SAMPLES,
                   verbose=False)
    with pytest.raises(ArError, match=rf"rotation=.* is not allowed: a foldable rotation .*format '{fmt}'.*"
                                      "auto-round 0.16.1"):
        ar.quantize_and_save(tmp_path / "q", format=fmt)
    assert ar.records is None and not (tmp_path / "q").exists()


def test_bad_rotation_uses_are_refused():
    with pytest.raises(ArError, match="tokenizer.*rotation margin"):
        AutoRound(tiny_llama(), recipe="rtn", rotation="hadamard")
    with pytest.raises(ArError, match="rotation.*foldable rotation.*with AWQ"):
        AutoRound(tiny_llama(), algorithm="awq", rotation="block", samples=SAMPLES)


@pytest.mark.parametrize("bad", ["r3", "block:x", {"mode": "block", "size": 4}, {"mode": "r1", "block_size": 64},
                                 {"random": "yes"}, {"margin": 1.5}, ""])
def test_bad_rotation_specs_raise(bad):
    with pytest.raises(ArError, match="rotation"):
        AutoRound(tiny_llama(), recipe="rtn", rotation=bad)
