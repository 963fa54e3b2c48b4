"""Our checkpoints against what the real auto-round 0.16.1 writes for the same tiny model and scheme (RTN, iters=0):
same tensor names, shapes and dtypes, and the same quantization_config keys (slow: one auto-round subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ar_export import get_writer
from ar_export.testing import quantize_model, tiny_llama, tiny_tokenizer

pytestmark = pytest.mark.slow
MIXED_AR = {"model.layers.0.mlp.down_proj": {"bits": 8}, "k_proj": {"bits": 16}}
MIXED_OURS = {"model.layers.0.mlp.down_proj": "W8A16", "k_proj": {"bits": 16}}
ASYM = {"sym": False}
# id: (auto-round scheme, auto-round kwargs, format, our scheme, our overrides)
CASES = {
    "w4asym": ("W4A16", ASYM, "auto_round", {"scheme": "W4A16", **ASYM}, None),
    "w2asym": ("W2A16", ASYM, "auto_round", {"scheme": "W2A16", **ASYM}, None),
    "w4mixed": ("W4A16", {"layer_config": MIXED_AR}, "auto_round", "W4A16", MIXED_OURS),
    "gptqmixed": ("W4A16", {"layer_config": MIXED_AR}, "auto_gptq", "W4A16", MIXED_OURS),
    "awq": ("W4A16", {}, "auto_awq", "W4A16", None),
    "ct": ("W4A16", {}, "llm_compressor", "W4A16", None),
    "ct_nvfp4": ("NVFP4", {}, "llm_compressor", "NVFP4", None),
    "mlx": ("W4A16", {}, "mlx", "W4A16", None),
    "mxfp4": ("MXFP4", {}, "auto_round", "MXFP4", None),
    "fp8_static": ("FP8_STATIC", {}, "auto_round", "FP8_STATIC", None),
}
TUNING_KNOBS = {"enable_quanted_input"}  # written by the tuner's run_info, not by the writer
OURS_ONLY = {"provider"}  # we name the producer in every compressed-tensors config
RUNNER = r"""
import glob, json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from auto_round import AutoRound
from ar_export.testing import tiny_llama, tiny_tokenizer, calibration_texts
cases, root = json.loads(sys.argv[1]), sys.argv[2]
for cid, (scheme, kw, fmt) in cases.items():
    ar = AutoRound(tiny_llama(), tiny_tokenizer(), scheme=scheme, iters=0, nsamples=2, seqlen=32,
                   dataset=calibration_texts(4), enable_torch_compile=False, disable_opt_rtn=True, **kw)
    ar.quantize_and_save(os.path.join(root, cid), format=fmt)
"""


def summary(path: Path) -> tuple[dict, dict]:
    """({tensor: (shape, dtype)}, config.json) of a checkpoint directory (searched recursively)."""
    tensors = {}
    for f in sorted(path.rglob("*.safetensors")):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                t = s.get_slice(k)
                tensors[k] = (tuple(t.get_shape()), t.get_dtype())
    return tensors, json.loads(next(path.rglob("config.json")).read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("autoround")
    spec = {cid: [c[0], c[1], c[2]] for cid, c in CASES.items()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(spec), str(root)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.parametrize("cid", list(CASES))
def test_same_tensors_and_config_keys_as_auto_round(cid, reference, tmp_path):
    _, _, fmt, scheme, overrides = CASES[cid]
    model = tiny_llama()
    q = quantize_model(model, scheme, overrides=overrides)
    for qt in q.values():
        qt.extras["act_max"] = torch.tensor(6.0)
    ours = get_writer(fmt).save(tmp_path / cid, model.to(torch.bfloat16), q, tokenizer=tiny_tokenizer())
    ref_t, ref_cfg = summary(reference / cid)
    our_t, our_cfg = summary(ours)
    assert set(our_t) == set(ref_t)
    packed = {k for k in ref_t if k.rpartition(".")[0] in q}
    forced_fp16 = fmt in ("auto_gptq", "auto_awq") or cid == "w4asym"  # ref writes bf16 despite dtype float16
    for k, (shape, dtype) in ref_t.items():
        assert our_t[k][0] == shape, k
        if k in packed or not forced_fp16:
            assert our_t[k][1] == dtype, k
    ref_qc = ref_cfg.get("quantization_config", {})
    our_qc = our_cfg.get("quantization_config", {})
    assert set(our_qc) - OURS_ONLY == set(ref_qc) - TUNING_KNOBS - OURS_ONLY
    for key in ("bits", "group_size", "sym", "data_type", "packing_format", "quant_method", "format", "zero_point",
                "block_name_to_quantize", "lm_head", "modules_in_block_to_quantize", "ignore"):
        if key in ref_qc:
            assert our_qc[key] == ref_qc[key], key
    for name, entry in ref_qc.get("extra_config", {}).items():
        if not name.startswith(".*"):  # auto-round also repeats the user's regex; we store resolved layer names
            assert our_qc["extra_config"][name]["bits"] == entry["bits"], name
    for gid, group in ref_qc.get("config_groups", {}).items():
        ours_group = our_qc["config_groups"][gid]
        assert set(ours_group) == set(group) and ours_group["targets"] == group["targets"]
        assert set(ours_group["weights"]) - {"block_structure"} <= set(group["weights"]) | {"observer"}
        for key in ("num_bits", "type", "symmetric", "strategy", "group_size"):
            assert ours_group["weights"][key] == group["weights"][key], (gid, key)
    if "quantization" in ref_cfg:
        assert our_cfg["quantization"] == ref_cfg["quantization"]
