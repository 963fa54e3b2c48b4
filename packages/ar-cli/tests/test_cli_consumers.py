"""Consumer-compatibility rules of `ar inspect` on hand-built facts."""

from __future__ import annotations

from ar_cli.consumers import Facts, consumer_support, fused_mismatch
from ar_core.presets import parse_scheme

W4 = parse_scheme("W4A16")
W8 = parse_scheme("W8A16")
LAYERS = [f"model.layers.0.{m}" for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]


def _facts(method="auto-round", packing="auto_round:auto_gptq", schemes=None, gguf=False, ct=None):
    return Facts(method, packing, schemes if schemes is not None else {n: W4 for n in LAYERS}, gguf, ct)


def test_uniform_w4_auto_round_loads_in_transformers_and_vllm():
    s = consumer_support(_facts())
    assert s["transformers"][0] and "auto-round" in s["transformers"][1]
    assert s["vllm"] == (True, "auto_round checkpoint (declared)")
    assert s["auto-round"] == (True, "auto_round checkpoint (pip install auto-round)")
    assert s["llama.cpp"][0] is False and "gguf" in s["llama.cpp"][1].lower()
    assert s["mlx-lm"][0] is False


def test_mixed_bits_inside_fused_qkv_blocks_vllm_with_reason():
    schemes = {n: W4 for n in LAYERS} | {"model.layers.0.self_attn.k_proj": W8}
    assert "self_attn.[q_proj/k_proj/v_proj]" in fused_mismatch(schemes)
    ok, why = consumer_support(_facts(schemes=schemes))["vllm"]
    assert not ok and "k_proj=8-bit" in why and "fused" in why
    assert consumer_support(_facts(schemes=schemes))["transformers"][0]


def test_16bit_gate_beside_quantized_up_is_a_mismatch():
    schemes = {n: W4 for n in LAYERS} | {"model.layers.0.mlp.gate_proj": None}
    assert "gate_proj=16-bit" in fused_mismatch(schemes)
    assert fused_mismatch({n: W4 for n in LAYERS}) is None


def test_vllm_rejects_non_int_and_odd_bits():
    mx = consumer_support(_facts(packing="auto_round:llm_compressor", schemes={LAYERS[0]: parse_scheme("MXFP4")}))
    assert mx["vllm"][0] is False and "int 2/3/4/8-bit only" in mx["vllm"][1]
    w5 = consumer_support(_facts(schemes={n: parse_scheme("W5A16") for n in LAYERS}))
    assert w5["vllm"][0] is False and "5-bit" in w5["vllm"][1]
    awq3 = consumer_support(_facts(method="awq", packing=None, schemes={LAYERS[0]: parse_scheme("W3A16")}))
    assert awq3["vllm"][0] is False and "does not hold int_sym 3-bit" in awq3["vllm"][1]
    assert consumer_support(_facts(method="awq", packing=None))["mlx-lm"][0]


def test_mlx_and_gguf_and_plain():
    mlx = consumer_support(_facts(method="mlx", packing=None))
    assert mlx["mlx-lm"][0] and not mlx["vllm"][0] and not mlx["transformers"][0]
    gguf = consumer_support(_facts(method=None, packing=None, schemes={}, gguf=True))
    assert gguf["llama.cpp"][0] and not gguf["vllm"][0] and not gguf["mlx-lm"][0] and gguf["transformers"][0]
    plain = consumer_support(_facts(method=None, packing=None, schemes={n: None for n in LAYERS}))
    assert plain["transformers"][0] and plain["vllm"][0] and plain["mlx-lm"][0] and not plain["llama.cpp"][0]
    ct = consumer_support(_facts(method="compressed-tensors", packing=None, ct="pack-quantized"))
    assert not ct["mlx-lm"][0] and ct["vllm"][0] and "compressed-tensors" in ct["transformers"][1]


def test_group_that_does_not_divide_in_features_is_a_no_per_layer_with_reason():
    """Row 4 of issue 17: SmolLM2's hidden 576 is not a multiple of 128; auto-round, gptqmodel and vLLM cannot run
    it."""
    widths = {n: 576 for n in LAYERS} | {"model.layers.0.mlp.down_proj": 1536}
    s = consumer_support(Facts("auto-round", "auto_round:auto_gptq", {n: W4 for n in LAYERS}, False, None, widths))
    ok, why = s["auto-round"]
    assert not ok and "layer model.layers.0.self_attn.q_proj in_features 576 % group_size 128 = 64" in why
    assert not s["vllm"][0] and "not aligned" in s["vllm"][1]
    assert not s["transformers"][0]
    g64 = {n: parse_scheme("W4A16G64") for n in LAYERS}
    assert consumer_support(Facts("auto-round", "auto_round:auto_gptq", g64, False, None, widths))["auto-round"][0]
    gptq = consumer_support(Facts("gptq", None, {n: W4 for n in LAYERS}, False, None, widths))
    assert not gptq["gptqmodel"][0] and "qGroupSize" in gptq["gptqmodel"][1] and not gptq["transformers"][0]
    ct = consumer_support(Facts("compressed-tensors", None, {n: W4 for n in LAYERS}, False, "pack-quantized", widths))
    assert not ct["compressed-tensors"][0] and "divisible" in ct["compressed-tensors"][1]


def test_fp8_block_on_576_wide_layers_is_a_no_for_compressed_tensors():
    """compressed-tensors fails in forward on FP8_BLOCK layers whose in_features 128 does not divide (SmolLM2's 576;
    seen in tests/test_consumer_table_smollm2.py)."""
    fp8 = {n: parse_scheme("FP8_BLOCK") for n in LAYERS}
    narrow = {n: 576 for n in LAYERS} | {"model.layers.0.mlp.down_proj": 1536}
    ok, why = consumer_support(Facts("compressed-tensors", None, fp8, False, "float-quantized", narrow))[
        "compressed-tensors"]
    assert not ok and "q_proj in_features 576 % block 128 = 64" in why and "unflatten" in why
    wide = {n: 1536 for n in LAYERS}
    assert consumer_support(Facts("compressed-tensors", None, fp8, False, "float-quantized", wide))[
        "compressed-tensors"][0]
