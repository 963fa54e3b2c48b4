"""Rotation through AutoRound, the auto_round export and ar_kernels.load: the reloaded model re-inserts the online
Hadamards and its logits match our own dequantized rotated model; formats that cannot carry them are refused."""

import json

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


@pytest.mark.parametrize("rotation,fmt", [("hadamard", "auto_round"), ("r1r2r4", "auto_round"),
                                          ({"mode": "block", "block_size": 32, "random": True, "seed": 3},
                                           "auto_round"), ("block", "auto_round"), ("r1r2", "auto_gptq")])
def test_rotated_checkpoint_reloads_with_its_online_rotations(tmp_path, rotation, fmt):
    model = _outlier_llama()
    ref_fp = _logits(model)
    ar = AutoRound(model, scheme="W4A16", group_size=64, recipe="rtn", rotation=rotation, samples=SAMPLES,
                   verbose=False)
    qmodel, [path] = ar.quantize_and_save(tmp_path / "q", format=fmt)
    qc = json.loads((path / "config.json").read_text())["quantization_config"]
    online = sum(len(e["layers"]) for e in ar.rotation_config["online"])
    if fmt == "auto_round":  # GPTQ's config has no place for it: only foldable rotations (no online part) go there
        assert qc["rotation_config"] == ar.rotation_config == qmodel.config.rotation_config
    loaded = load(path, dtype=torch.float32)
    assert _online(loaded) == _online(qmodel) == online and (online > 0) == (fmt == "auto_round")
    ours = _logits(qmodel)
    assert not torch.allclose(ours, ref_fp, atol=1e-3)  # really quantized
    tol = 2e-3 if fmt == "auto_round" else 1e-2  # GPTQ stores the float tensors and scales in fp16
    torch.testing.assert_close(_logits(loaded), ours, atol=tol, rtol=tol)


def test_formats_without_online_rotations_are_refused_before_work(tmp_path):
    ar = AutoRound(tiny_llama(), scheme="W4A16", group_size=64, recipe="rtn", rotation="random", samples=SAMPLES,
                   verbose=False)
    with pytest.raises(ArError, match="format.*auto_gptq.*online rotations"):
        ar.quantize_and_save(tmp_path / "q", format="auto_gptq")
    assert ar.records is None
    with pytest.raises(ArError, match="tokenizer.*rotation margin"):
        AutoRound(tiny_llama(), recipe="rtn", rotation="hadamard")
    with pytest.raises(ArError, match="rotation.*foldable rotation.*with AWQ"):
        AutoRound(tiny_llama(), algorithm="awq", rotation="block", samples=SAMPLES)


@pytest.mark.parametrize("bad", ["r3", "block:x", {"mode": "block", "size": 4}, {"mode": "r1", "block_size": 64},
                                 {"random": "yes"}, {"margin": 1.5}, ""])
def test_bad_rotation_specs_raise(bad):
    with pytest.raises(ArError, match="rotation"):
        AutoRound(tiny_llama(), recipe="rtn", rotation=bad)
