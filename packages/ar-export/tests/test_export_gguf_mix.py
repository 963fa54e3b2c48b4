"""llama.cpp per-tensor type rules of the GGUF writer (mixes, use-more-bits layers, row-size fallbacks)."""

import pytest

pytest.importorskip("gguf")

from ar_core.errors import SchemeError  # noqa: E402
from ar_export.gguf.mix import check_mix, fallback, tensor_type, use_more_bits, wanted_type  # noqa: E402


def test_use_more_bits_layers_of_a_32_layer_model():
    chosen = [i for i in range(32) if use_more_bits(i, 32)]
    # first and last eighth, and every third layer in between
    assert chosen == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


@pytest.mark.parametrize("mix,layer,expected", [
    ("q4_k_m", 0, "q6_k"), ("q4_k_m", 4, "q4_k"), ("q4_k_m", 6, "q6_k"), ("q5_k_m", 31, "q6_k"),
    ("q4_k_s", 3, "q5_k"), ("q4_k_s", 4, "q4_k"), ("q3_k_m", 1, "q5_k"), ("q3_k_m", 2, "q4_k"),
    ("q3_k_l", 20, "q5_k"), ("q3_k_s", 0, "q3_k"), ("q5_k_s", 0, "q5_k"), ("q6_k", 0, "q6_k"),
    ("q4_0", 0, "q4_0"), ("q8_0", 5, "q8_0"),
])
def test_attn_v_rules(mix, layer, expected):
    assert tensor_type(mix, f"blk.{layer}.attn_v.weight", 4096, 32, n_gqa=1) == expected


def test_gqa_and_expert_rules():
    assert tensor_type("q2_k_s", "blk.0.attn_v.weight", 4096, 32, n_gqa=4) == "q4_k"
    assert tensor_type("q2_k_s", "blk.0.attn_v.weight", 4096, 32, n_gqa=2) == "q2_k"
    assert tensor_type("q4_k_m", "blk.9.attn_v.weight", 4096, 32, n_expert=8) == "q8_0"
    assert tensor_type("q4_k_m", "blk.0.ffn_down_exps.weight", 4096, 32) == "q6_k"
    # 8 experts (llama.cpp): attn_k -> q8_0; attn_output -> q5_k only for q2_k, q3_k_s/m, q4_k_s/m
    assert tensor_type("q4_k_m", "blk.5.attn_k.weight", 4096, 32, n_expert=8) == "q8_0"
    assert tensor_type("q4_k_m", "blk.5.attn_output.weight", 4096, 32, n_expert=8) == "q5_k"
    assert tensor_type("q2_k_s", "blk.5.attn_output.weight", 4096, 32, n_expert=8) == "q2_k"


@pytest.mark.parametrize("mix,layer,expected", [
    ("q4_k_m", 0, "q6_k"), ("q4_k_m", 4, "q4_k"), ("q3_k_m", 1, "q5_k"), ("q3_k_m", 2, "q4_k"),
    ("q3_k_l", 9, "q5_k"), ("q4_k_s", 3, "q5_k"), ("q4_k_s", 4, "q4_k"), ("q2_k_s", 3, "q4_k"), ("q2_k_s", 4, "q2_k"),
])
def test_ffn_down_rules(mix, layer, expected):
    assert tensor_type(mix, f"blk.{layer}.ffn_down.weight", 11008, 32) == expected


def test_output_and_embedding():
    assert tensor_type("q4_k_m", "output.weight", 4096, 32) == "q6_k"
    assert tensor_type("q4_0", "output.weight", 4096, 32) == "q6_k"
    assert tensor_type("q8_0", "output.weight", 4096, 32) == "q8_0"
    assert tensor_type("q4_k_m", "token_embd.weight", 4096, 32) == "q4_k"
    assert tensor_type("q4_k_m", "token_embd.weight", 4096, 32, tied=True) == "q6_k"
    assert tensor_type("q3_k_m", "blk.3.attn_output.weight", 4096, 32) == "q4_k"
    assert tensor_type("q4_k_m", "blk.3.attn_qkv.weight", 4096, 32) == "q5_k"
    assert tensor_type("q4_k_m", "blk.3.ffn_gate.weight", 4096, 32) == "q4_k"


def test_wanted_type_is_the_rule_before_the_row_fallback():
    assert wanted_type("q4_k_m", "blk.0.attn_v.weight", 30) == "q6_k"
    assert tensor_type("q4_k_m", "blk.0.attn_v.weight", 576, 30) == "q8_0"
    assert wanted_type("q4_k_m", "token_embd.weight", 30, tied=True) == "q6_k"


def test_row_fallbacks():
    assert fallback("q4_k", 576) == "q5_0"
    assert fallback("q2_k", 576) == "q4_0"  # as llama.cpp (llama-cpp-python 0.3.36) does
    assert fallback("q3_k", 576) == "q4_0"
    assert fallback("q5_k", 576) == "q5_1"
    assert fallback("q6_k", 576) == "q8_0"
    assert fallback("q4_k", 50) == "bf16"
    assert fallback("q4_0", 48) == "bf16"
    assert fallback("q4_k", 512) == "q4_k"
    assert tensor_type("q4_k_m", "output.weight", 576, 30, tied=True) == "q8_0"


def test_mix_names():
    assert check_mix("GGUF:Q4_K_M") == "q4_k_m"
    with pytest.raises(SchemeError, match="mix"):
        check_mix("q4_k_x")
