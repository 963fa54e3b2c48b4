"""transformers' from_pretrained loads auto-round checkpoints through ar_kernels (autoround.md §10.1)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import ar_kernels
from ar_kernels import hf_quantizer
from ar_kernels.testing import quantize_block_linears, save_quantized, tiny_llama


def write_checkpoint(path, fmt="auto_round:auto_gptq", sym=True, packing="gptq"):
    model = tiny_llama(64, 128)
    save_quantized(path, model, quantize_block_linears(model, sym=sym, packing=packing), {"quantization_config": {
        "quant_method": "auto-round", "packing_format": fmt, "bits": 4, "group_size": 32, "sym": sym,
        "data_type": "int", "block_name_to_quantize": "model.layers"}})


def logits(model):
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture
def transformers_own(monkeypatch):
    """transformers' own auto-round quantizer in the mapping (restored afterwards, whatever it was)."""
    from transformers.quantizers.auto import AUTO_QUANTIZER_MAPPING
    from transformers.quantizers.quantizer_auto_round import AutoRoundQuantizer

    monkeypatch.setitem(AUTO_QUANTIZER_MAPPING, "auto-round", AutoRoundQuantizer)
    monkeypatch.setattr(hf_quantizer, "_original", {})
    return AUTO_QUANTIZER_MAPPING, AutoRoundQuantizer


@pytest.fixture
def forced(transformers_own):
    mapping, own = transformers_own
    assert ar_kernels.enable_transformers_integration(force=True)
    assert mapping["auto-round"].__name__ == "ArAutoRoundQuantizer"
    yield
    ar_kernels.disable_transformers_integration()
    assert mapping["auto-round"] is own


@pytest.mark.parametrize("fmt,sym,packing,cls", [("auto_round", False, "gptq_v2", "CPUIntLinear"),
                                                  ("auto_round:auto_awq", False, "awq", "CPUIntLinear")])
def test_forced_integration_matches_load(tmp_path, forced, fmt, sym, packing, cls):
    from transformers import AutoModelForCausalLM

    write_checkpoint(tmp_path, fmt, sym, packing)
    for dtype in (torch.float32, torch.bfloat16):
        hf = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=dtype)
        ours = ar_kernels.load(tmp_path, dtype=dtype)
        layer = hf.model.layers[1].mlp.down_proj
        assert type(layer).__name__ == cls  # loaded in the checkpoint's layout, then repacked for the cpu backend
        assert hf.ar_backends == ours.ar_backends and len(hf.ar_backends) == 14
        assert torch.equal(logits(hf), logits(ours))


def test_reference_package_is_kept_unless_forced(monkeypatch, transformers_own):
    AUTO_QUANTIZER_MAPPING, AutoRoundQuantizer = transformers_own
    monkeypatch.setattr(hf_quantizer, "reference_installed", lambda: True)
    assert not ar_kernels.enable_transformers_integration()
    assert AUTO_QUANTIZER_MAPPING["auto-round"] is AutoRoundQuantizer
    try:
        assert ar_kernels.enable_transformers_integration(force=True)
        assert AUTO_QUANTIZER_MAPPING["auto-round"].__name__ == "ArAutoRoundQuantizer"
    finally:
        ar_kernels.disable_transformers_integration()
    assert AUTO_QUANTIZER_MAPPING["auto-round"] is AutoRoundQuantizer


UNPATCHED = """
import ar_kernels, transformers
from transformers.quantizers.auto import AUTO_QUANTIZER_MAPPING
print("RESULT", AUTO_QUANTIZER_MAPPING["auto-round"].__name__)
"""


def test_import_leaves_transformers_unpatched():
    """Even without the reference package (the case the integration replaces it in), importing changes nothing."""
    code = textwrap.dedent(BLOCK_AUTO_ROUND) + textwrap.dedent(UNPATCHED)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT AutoRoundQuantizer" in done.stdout, done.stdout[-2000:]


BLOCK_AUTO_ROUND = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "auto_round" or name.startswith("auto_round."):
            raise ModuleNotFoundError(f"{name} is blocked", name=name)
sys.meta_path.insert(0, Block())
"""

CHECK = """
import sys, torch
import ar_kernels
from transformers import AutoModelForCausalLM
ar_kernels.enable_transformers_integration()
hf = AutoModelForCausalLM.from_pretrained(sys.argv[1])
ours = ar_kernels.load(sys.argv[1])
ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    same = torch.equal(hf(ids).logits, ours(ids).logits)
print("RESULT", type(hf.model.layers[0].self_attn.q_proj).__name__, len(hf.ar_backends), same)
"""


@pytest.mark.slow
def test_from_pretrained_without_auto_round_package(tmp_path):
    write_checkpoint(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    code = textwrap.dedent(BLOCK_AUTO_ROUND) + textwrap.dedent(CHECK)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT CPUIntLinear 14 True" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
