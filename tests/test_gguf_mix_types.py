"""GGUF mixes written by `ar quantize` (and by the Python API, whatever the format spelling) store every tensor in
the ggml type llama.cpp's own quantizer picks for the same model (`llama_tensor_get_type` in src/llama-quant.cpp).

The tables are written by hand from llama.cpp's rules, not computed by ar_export.gguf.mix. For a mix the rules
touch only attn_v, ffn_down, attn_output (and output); every other weight keeps the mix's base type. use_more_bits
(_M mixes) picks layer i < n/8, i >= 7n/8 or (i - n/8) % 3 == 2: layers 0, 3, 6, 7 of 8. n_gqa >= 4 upgrades the
q2_k / q2_k_s attn_v to q4_k. A row that no 256-block divides falls back: q2_k/q3_k -> q4_0, q4_k -> q5_0,
q5_k -> q5_1, q6_k -> q8_0 (SmolLM2's 576-wide rows, in the slow test).
"""

from __future__ import annotations

import pytest

from ar_algos import AutoRound
from ar_cli.main import main
from ar_export.gguf.writer import plan_types
from ar_export.testing import save_tiny_model, tiny_llama, tiny_tokenizer

gguf = pytest.importorskip("gguf")

# 8 layers, hidden 256, MLP 256 (every row holds a k-quant block), 4 query heads on 1 KV head (n_gqa 4), untied.
TINY = dict(num_hidden_layers=8, intermediate_size=256, num_key_value_heads=1)
# mix -> (base bits, per-layer k-quant bits of attn_v, ffn_down, attn_output; "" keeps the base type)
TINY_TABLE = {
    "q2_k": (2, "44444444", "33333333", "33333333"),
    "q2_k_s": (2, "44444444", "42222222", ""),
    "q3_k_s": (3, "", "", ""),
    "q3_k_m": (3, "55444444", "44444444", "44444444"),
    "q3_k_l": (3, "55555555", "55555555", "55555555"),
    "q4_k_s": (4, "55554444", "54444444", ""),
    "q4_k_m": (4, "64464466", "64464466", ""),
    "q5_k_s": (5, "", "", ""),
    "q5_k_m": (5, "65565566", "65565566", ""),
}
ROLES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def tiny_expected(mix: str) -> dict[str, str]:
    """GGUF tensor name -> ggml type name llama.cpp picks for the TINY model under `mix`."""
    base, *upgrades = TINY_TABLE[mix]
    special = dict(zip(("attn_v", "ffn_down", "attn_output"), upgrades))
    out = {"token_embd.weight": f"Q{base}_K", "output.weight": "Q6_K"}
    for i in range(TINY["num_hidden_layers"]):
        for role in ROLES:
            bits = special.get(role) or str(base) * TINY["num_hidden_layers"]
            out[f"blk.{i}.{role}.weight"] = f"Q{bits[i]}_K"
    return out


def file_types(out_dir) -> dict[str, str]:
    """Tensor name -> ggml type name of every 2-D tensor in the one .gguf file under `out_dir`."""
    (path,) = list(out_dir.rglob("*.gguf"))
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors if len(t.shape) >= 2}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("gguf-mix") / "tiny", **TINY)


@pytest.mark.parametrize("mix", list(TINY_TABLE))
def test_ar_quantize_writes_llama_cpp_types(tiny_dir, tmp_path, mix):
    out = tmp_path / "out"
    assert main(["quantize", str(tiny_dir), "--format", f"gguf:{mix}", "--iters", "0", "--disable_opt_rtn",
                 "--output_dir", str(out)]) == 0
    expected = tiny_expected(mix)
    assert file_types(out) == expected
    # write_gguf alone (the benchmark's opt-RTN rows) plans the same types
    writer = {spec.gguf_name: qtype.upper() for spec, qtype in plan_types(tiny_llama(**TINY), mix)
              if spec.tensor.ndim >= 2}
    assert writer == expected


@pytest.mark.parametrize("scheme,fmt", [(None, "gguf:q4_k_m"), ("GGUF:Q4_K_M", "gguf"), (None, "GGUF:Q4_K_M"),
                                        ("gguf:q4_k_m", "gguf:q4_k_m")])
def test_api_spellings_and_tuning_write_llama_cpp_types(tmp_path, scheme, fmt):
    kwargs = {"scheme": scheme} if scheme else {}
    tune = fmt == "gguf"  # one SignRound run: tuned records keep the upgraded types; the others plain RTN
    ar = AutoRound(tiny_llama(**TINY), tiny_tokenizer(), iters=2 if tune else 0, disable_opt_rtn=not tune,
                   nsamples=2, seqlen=16, verbose=False, **kwargs)
    ar.quantize_and_save(tmp_path / "out", format=fmt)
    assert file_types(tmp_path / "out") == tiny_expected("q4_k_m")
    assert ar.records["model.layers.3.self_attn.v_proj"].scheme.bits == 6
    assert "per-tensor rule" in ar.plan.entries["model.layers.7.mlp.down_proj"].reason


# SmolLM2-135M: 30 layers, hidden 576 (no 256-block: attn_*, ffn_gate/up fall back), MLP 1536 (ffn_down keeps
# k-quants), 9 query heads on 3 KV heads (n_gqa 3), tied embeddings (one token_embd in the output type: q6_k at width
# 576 -> q8_0, no output tensor). use_more_bits of 30 layers: i < 3, i >= 26, or (i - 3) % 3 == 2.
SMOL_MORE = (0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29)
# mix -> (type of every other weight, {role: (type, upgraded type, upgraded layers)})
SMOL_TABLE = {
    "q4_k_m": ("Q5_0", {"attn_v": ("Q5_0", "Q8_0", SMOL_MORE), "ffn_down": ("Q4_K", "Q6_K", SMOL_MORE)}),
    "q4_k_s": ("Q5_0", {"attn_v": ("Q5_0", "Q5_1", (0, 1, 2, 3)), "ffn_down": ("Q4_K", "Q5_K", (0, 1, 2))}),
    "q3_k_m": ("Q4_0", {"attn_v": ("Q5_0", "Q5_1", (0, 1)), "ffn_down": ("Q4_K", "Q5_K", (0,)),
                        "attn_output": ("Q5_0", "Q5_0", ())}),
    "q2_k_s": ("Q4_0", {"ffn_down": ("Q2_K", "Q4_K", (0, 1, 2))}),
}


def smol_expected(mix: str) -> dict[str, str]:
    """GGUF tensor name -> ggml type name llama.cpp picks for SmolLM2-135M under `mix`."""
    rest, roles = SMOL_TABLE[mix]
    out = {"token_embd.weight": "Q8_0"}
    for i in range(30):
        for role in ROLES:
            plain, upgraded, layers = roles.get(role, (rest, rest, ()))
            out[f"blk.{i}.{role}.weight"] = upgraded if i in layers else plain
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mix", list(SMOL_TABLE))
def test_ar_quantize_smollm2_writes_llama_cpp_types(tmp_path, mix):
    out = tmp_path / "out"
    assert main(["quantize", "smollm2-135m", "--format", f"gguf:{mix}", "--iters", "0", "--disable_opt_rtn",
                 "--output_dir", str(out)]) == 0
    types = file_types(out)
    assert len(types) == 211 and types == smol_expected(mix)
