"""Golden sha256 of every file each export format writes, from RTN and optimized-RTN runs: restructuring must keep
every format's output byte-identical.

The tiny random Llama (`ar_export.testing`) covers every format and packing in the fast suite; SmolLM2-135M covers
two formats of one RTN run (slow). The expected hashes live in `golden_formats.json` next to this file.
Normalised before hashing: in `.json` files the values of keys ending in "version" (`transformers_version`,
`ar_version`, `autoround_version`, ...), which change with package releases, not with our bytes. No other file embeds
a version or a timestamp (GGUF stores only GGML's quantization version, a format constant).

Regenerate after an intended output change (and say why in the commit):
    .venv/bin/python tests/test_golden_formats.py --update-golden          # the tiny-model cases
    .venv/bin/python tests/test_golden_formats.py --update-golden --slow   # and the SmolLM2 case
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("golden_formats.json")
VERSION_VALUE = re.compile(rb'("[A-Za-z_]*version"\s*:\s*)"[^"]*"')
CALIB = dict(dataset="pydoc", nsamples=2, seqlen=32, amp=False)  # bf16 autocast depends on the CPU (AMX/AVX512-BF16)

# case id -> (AutoRound keyword arguments, formats saved from that one quantization)
TINY: dict[str, tuple[dict, list[str]]] = {
    "rtn-w4a16": (dict(scheme="W4A16", recipe="rtn"),
                  ["auto_round", "auto_gptq", "llm_compressor", "mlx", "auto_round:mlx", "fake"]),
    "optrtn-w4a16": (dict(scheme="W4A16", recipe="opt-rtn"), ["auto_round", "auto_gptq", "llm_compressor", "mlx"]),
    "rtn-w4a16-asym": (dict(scheme="W4A16", sym=False, recipe="rtn"), ["auto_round", "auto_awq", "fake"]),
    "optrtn-w4a16-asym": (dict(scheme="W4A16", sym=False, recipe="opt-rtn"), ["auto_round", "auto_awq"]),
    "rtn-w2a16g32": (dict(scheme="W2A16G32", recipe="rtn"), ["auto_round", "auto_gptq"]),
    "rtn-w3a16": (dict(scheme="W3A16", recipe="rtn"), ["auto_round", "mlx"]),
    "rtn-w8a16": (dict(scheme="W8A16", recipe="rtn"), ["auto_round", "llm_compressor"]),
    "rtn-mxfp4": (dict(scheme="MXFP4", recipe="rtn"), ["auto_round", "llm_compressor"]),
    "rtn-mxfp8": (dict(scheme="MXFP8", recipe="rtn"), ["auto_round", "llm_compressor"]),
    "rtn-mxfp6": (dict(scheme="MXFP6", recipe="rtn"), ["fake"]),
    "rtn-mxint4": (dict(scheme="MXINT4", recipe="rtn"), ["auto_round"]),
    "rtn-nvfp4": (dict(scheme="NVFP4", recipe="rtn"), ["auto_round", "llm_compressor"]),
    "rtn-fpw8a16": (dict(scheme="FPW8A16", recipe="rtn"), ["auto_round", "llm_compressor"]),
    "rtn-fp8-static": (dict(scheme="FP8_STATIC", recipe="rtn"), ["auto_round", "llm_compressor"]),
    "rtn-fp8-block": (dict(scheme="FP8_BLOCK", recipe="rtn"), ["fp8", "llm_compressor"]),
    "rtn-int8-w8a8": (dict(scheme="INT8_W8A8", recipe="rtn"), ["llm_compressor"]),
    "rtn-w4a4": (dict(scheme="W4A4", recipe="rtn"), ["fake"]),
    "rtn-gguf-q4_0": (dict(scheme="GGUF:Q4_0", recipe="rtn"), ["gguf"]),
    "rtn-gguf-q8_0": (dict(scheme="GGUF:Q8_0", recipe="rtn"), ["gguf"]),
    "rtn-gguf-q2_k_s": (dict(scheme="GGUF:Q2_K_S", recipe="rtn"), ["gguf"]),
    "rtn-gguf-q4_k_m": (dict(scheme="GGUF:Q4_K_M", recipe="rtn"), ["gguf", "fake"]),
    "optrtn-gguf-q4_k_m": (dict(scheme="GGUF:Q4_K_M", recipe="opt-rtn"), ["gguf"]),
    "rtn-gguf-q6_k": (dict(scheme="GGUF:Q6_K", recipe="rtn"), ["gguf"]),
}
# one RTN run of the real model, two formats (optimized RTN of all 30 blocks would take minutes on 2 cores)
SMOLLM2: dict[str, tuple[dict, list[str]]] = {
    "rtn-w4a16g64": (dict(scheme="W4A16", group_size=64, recipe="rtn"), ["auto_round", "auto_gptq"]),
}


def file_hash(path: Path) -> str:
    """sha256 of the file's bytes; in `.json` files every "...version": "x" value is replaced by a placeholder."""
    data = path.read_bytes()
    if path.suffix == ".json":
        data = VERSION_VALUE.sub(rb'\1"<version>"', data)
    return hashlib.sha256(data).hexdigest()


def folder_hashes(root: Path) -> dict[str, str]:
    """{relative path: file_hash} of every file under `root`."""
    return {p.relative_to(root).as_posix(): file_hash(p) for p in sorted(root.rglob("*")) if p.is_file()}


def run_case(model, tokenizer, kwargs: dict, formats: list[str], out: Path) -> dict[str, str]:
    """Quantize `model` with `kwargs`, save it in `formats` under `out` and return the hashes of what was written."""
    import ar_export
    from ar_algos import AutoRound

    ar_export.register_all()
    ar = AutoRound(model, tokenizer, verbose=False, **CALIB, **kwargs)
    ar.quantize()
    ar.save_quantized(out, formats)
    return folder_hashes(out)


def tiny_hashes(case: str, out: Path) -> dict[str, str]:
    """The hashes of tiny-model case `case` (a fresh model per case: quantizing changes its weights)."""
    from ar_export.testing import tiny_llama, tiny_tokenizer

    kwargs, formats = TINY[case]
    return run_case(tiny_llama(), tiny_tokenizer(), kwargs, formats, out)


def smollm2_hashes(case: str, out: Path) -> dict[str, str]:
    """The hashes of SmolLM2 case `case`."""
    from ar_algos.models import resolve_model

    model, tokenizer = resolve_model("smollm2-135m", dtype="float32")
    kwargs, formats = SMOLLM2[case]
    return run_case(model, tokenizer, kwargs, formats, out)


def expected(suite: str, case: str) -> dict[str, str]:
    """The committed hashes of `case` in `suite` ("tiny" or "smollm2")."""
    return json.loads(GOLDEN.read_text())[suite][case]


def compare(got: dict[str, str], want: dict[str, str]) -> None:
    """Fail naming every file added, missing or changed."""
    changed = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    problems = {"changed": changed, "new": sorted(set(got) - set(want)), "missing": sorted(set(want) - set(got))}
    assert not any(problems.values()), f"output differs from {GOLDEN.name}: {problems}"


@pytest.mark.parametrize("case", list(TINY))
def test_tiny_model_outputs_match_golden(case, tmp_path):
    compare(tiny_hashes(case, tmp_path / "out"), expected("tiny", case))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SMOLLM2))
def test_smollm2_outputs_match_golden(case, tmp_path):
    compare(smollm2_hashes(case, tmp_path / "out"), expected("smollm2", case))


def update(slow: bool) -> None:
    """Recompute the tiny cases (and the SmolLM2 ones when `slow`) and rewrite golden_formats.json."""
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    suites = [("tiny", TINY, tiny_hashes)] + ([("smollm2", SMOLLM2, smollm2_hashes)] if slow else [])
    for suite, cases, hashes in suites:
        golden[suite] = {}
        for case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                golden[suite][case] = hashes(case, Path(tmp) / "out")
            print(f"{suite}/{case}: {len(golden[suite][case])} files", flush=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Regenerate tests/golden_formats.json.")
    parser.add_argument("--update-golden", action="store_true", required=True, help="recompute and rewrite")
    parser.add_argument("--slow", action="store_true", help="also the SmolLM2 cases")
    args = parser.parse_args()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")
    update(args.slow)
    sys.exit(0)
