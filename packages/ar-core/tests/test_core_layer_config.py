"""Layer-configuration resolution: precedence, matching, lm_head/router/embedding rules, shape fallbacks, JSON."""

from __future__ import annotations

import pytest

from ar_core.errors import LayerConfigError
from ar_core.layer_config import LayerInfo, Plan, resolve_plan
from ar_core.plan.patterns import key_regex
from ar_core.presets import get_preset, gguf_scheme
from ar_core.scheme import QuantScheme

W4, W8 = get_preset("W4A16"), get_preset("W8A16")


def llama(blocks: int = 2, hidden: int = 256, inter: int = 512, vocab: int = 1024) -> list[LayerInfo]:
    """A Llama-like model: embeddings, q/k/v (fused), o, gate/up (fused), down per block, lm_head."""
    layers = [LayerInfo("model.embed_tokens", hidden, vocab, kind="embedding", in_block=False)]
    for i in range(blocks):
        p = f"model.layers.{i}"
        qkv, gu = f"{p}.self_attn.qkv", f"{p}.mlp.gate_up"
        layers += [LayerInfo(f"{p}.self_attn.q_proj", hidden, hidden, fused_group=qkv),
                   LayerInfo(f"{p}.self_attn.k_proj", hidden, hidden // 2, fused_group=qkv),
                   LayerInfo(f"{p}.self_attn.v_proj", hidden, hidden // 2, fused_group=qkv),
                   LayerInfo(f"{p}.self_attn.o_proj", hidden, hidden),
                   LayerInfo(f"{p}.mlp.gate_proj", hidden, inter, fused_group=gu),
                   LayerInfo(f"{p}.mlp.up_proj", hidden, inter, fused_group=gu),
                   LayerInfo(f"{p}.mlp.down_proj", inter, hidden)]
    return layers + [LayerInfo("lm_head", hidden, vocab, in_block=False)]


def moe(experts: int = 4, hidden: int = 128) -> list[LayerInfo]:
    """One Qwen-MoE-like block: attention, an unflagged '.gate' router, routed and shared experts."""
    p = "model.layers.0"
    layers = [LayerInfo(f"{p}.self_attn.q_proj", hidden, hidden), LayerInfo(f"{p}.mlp.gate", hidden, experts)]
    for e in range(experts):
        layers += [LayerInfo(f"{p}.mlp.experts.{e}.{n}_proj", hidden, 128, kind="expert") for n in ("gate", "up")]
        layers.append(LayerInfo(f"{p}.mlp.experts.{e}.down_proj", 128, hidden, kind="expert"))
    layers += [LayerInfo(f"{p}.mlp.shared_expert.down_proj", 256, hidden),
               LayerInfo(f"{p}.mlp.shared_expert_gate", hidden, 1)]
    return layers + [LayerInfo("lm_head", hidden, 512, in_block=False)]


def smollm2() -> list[LayerInfo]:
    """SmolLM2-135M shapes (hidden 576, 3 KV heads of 64, intermediate 1536, vocab 49152, tied embeddings)."""
    return llama(blocks=2, hidden=576, inter=1536, vocab=49152)


def block(plan: Plan, i: int) -> dict[str, QuantScheme]:
    return {n: e.scheme for n, e in plan.entries.items() if f"layers.{i}." in n}


def test_default_plan_quantizes_block_linears_only():
    plan = resolve_plan(llama(), "W4A16")
    assert plan.quantized() == [n for n in plan.entries if ".layers." in n] and len(plan.quantized()) == 14
    assert all(plan.entries[n].scheme == W4 and plan.entries[n].source == "default" for n in plan.quantized())
    emb, head = plan.entries["model.embed_tokens"], plan.entries["lm_head"]
    assert not emb.scheme.is_quantized and "GGUF" in emb.reason
    assert not head.scheme.is_quantized and "quant_lm_head" in head.reason
    assert plan.lm_head == "lm_head" and plan.fallbacks == [] and plan.regex_config == {}
    assert plan.schemes()["model.layers.1.mlp.down_proj"] == W4


def test_ignore_entry_ending_in_digit_does_not_hit_layer_10():
    plan = resolve_plan(llama(blocks=12), "W4A16", ignore_layers="layers.1")
    ignored = {n for n, e in plan.entries.items() if e.source == "ignore"}
    assert ignored == set(block(plan, 1)) and len(ignored) == 7
    assert all(plan.entries[n].fixed_by_user and plan.entries[n].pattern == "layers.1" for n in ignored)
    assert block(plan, 10)["model.layers.10.mlp.up_proj"] == W4


def test_ignore_digit_entry_still_matches_at_end_of_name():
    layers = [LayerInfo("m.layers.0.mlp.fc1", 128, 128), LayerInfo("m.layers.0.mlp.fc10", 128, 128),
              LayerInfo("m.layers.0.mlp.fc2", 128, 128)]
    plan = resolve_plan(layers, "W4A16", ignore_layers=["fc1"])
    assert [n for n in plan.entries if plan.entries[n].source == "ignore"] == ["m.layers.0.mlp.fc1"]


def test_ignore_comma_string_equals_list_and_wins_over_layer_config():
    a = resolve_plan(llama(), "W4A16", ignore_layers=" down_proj, layers.0.self_attn.q_proj ,",
                     layer_config={"mlp": "W8A16"})
    b = resolve_plan(llama(), "W4A16", ignore_layers=["down_proj", "layers.0.self_attn.q_proj"],
                     layer_config={"mlp": "W8A16"})
    assert a == b
    assert a.entries["model.layers.1.mlp.down_proj"].source == "ignore"
    assert a.entries["model.layers.1.mlp.up_proj"].scheme == W8
    assert not a.regex_config["down_proj"].is_quantized and a.regex_config["mlp"] == W8


def test_unmatched_patterns_raise_with_closest_names_or_are_listed():
    with pytest.raises(LayerConfigError, match=r"'layers\.0\.mlp\.gate_prj'.*model\.layers\.0\.mlp\.gate_proj"):
        resolve_plan(llama(), "W4A16", layer_config={"layers.0.mlp.gate_prj": "W8A16"})
    with pytest.raises(LayerConfigError, match="ignore_layers entry 'layers.7'"):
        resolve_plan(llama(), "W4A16", ignore_layers="layers.7")
    plan = resolve_plan(llama(), "W4A16", ignore_layers="layers.7", layer_config={"nope": "W8A16"}, strict=False)
    assert plan.unmatched == ["nope", "layers.7"] and plan.quantized() == resolve_plan(llama(), "W4A16").quantized()


def test_layer_config_value_forms():
    default = get_preset("W4A16").replace(group_size=64, sym=False)
    plan = resolve_plan(llama(), default, layer_config={
        "model.layers.0.self_attn.q_proj": "W8A16",
        "model.layers.0.self_attn.k_proj": QuantScheme(bits=3, group_size=32),
        "model.layers.0.self_attn.v_proj": {"scheme": "W2A16", "group_size": 32},
        "model.layers.0.self_attn.o_proj": {"bits": 8},
        "model.layers.0.mlp.up_proj": {"data_type": "int8"},
        "model.layers.0.mlp.down_proj": {"bits": 16},
    })
    s = block(plan, 0)
    assert s["model.layers.0.self_attn.q_proj"] == W8
    assert s["model.layers.0.self_attn.k_proj"] == QuantScheme(bits=3, group_size=32)
    assert (s["model.layers.0.self_attn.v_proj"].bits, s["model.layers.0.self_attn.v_proj"].group_size) == (2, 32)
    assert s["model.layers.0.self_attn.o_proj"] == default.replace(bits=8)  # bits-only inherits the default
    assert s["model.layers.0.mlp.up_proj"] == default.replace(bits=8)  # bit suffix sets bits
    assert not s["model.layers.0.mlp.down_proj"].is_quantized
    assert all(plan.entries[n].source == "user" and plan.entries[n].fixed_by_user for n in s if "gate" not in n)


def test_double_quant_data_type_with_bits_picks_kquant_and_fixed_by_user_flag():
    plan = resolve_plan(llama(), "W4A16", format="gguf", layer_config={
        "layers.0.mlp": {"data_type": "int_sym_dq", "bits": 6},
        "layers.1.mlp": {"data_type": "int_asym_dq", "bits": 4, "fixed_by_user": False}})
    assert plan.entries["model.layers.0.mlp.down_proj"].scheme == gguf_scheme("q6_k")
    e = plan.entries["model.layers.1.mlp.down_proj"]
    assert e.scheme == gguf_scheme("q4_k_s") and not e.fixed_by_user and e.pattern == "layers.1.mlp"


@pytest.mark.parametrize("value, words", [
    (42, ["42", "preset name"]), ({"bits": 7}, ["bits", "7"]), ({"nonsense": 1}, ["nonsense"]),
    ("W9Z", ["W9Z"]), ({"fixed_by_user": "yes"}, ["fixed_by_user"]), ({"group_size": [1, 2, 3]}, ["group_size"]),
    ({"data_type": ["int"]}, ["data_type"]), ({1: 2}, ["keys"]),
])
def test_malformed_values_name_key_and_value(value, words):
    with pytest.raises(LayerConfigError) as info:
        resolve_plan(llama(), "W4A16", layer_config={"model.layers.0.mlp.up_proj": value})
    msg = str(info.value)
    assert "model.layers.0.mlp.up_proj" in msg and all(w in msg for w in words), msg


def test_gguf_default_refuses_field_tweaks_but_takes_gguf_types_and_16bit():
    with pytest.raises(LayerConfigError, match="GGUF"):
        resolve_plan(smollm2(), "gguf:q4_k_m", layer_config={"o_proj": {"bits": 8}})
    plan = resolve_plan(smollm2(), "gguf:q4_k_m", layer_config={"o_proj": "gguf:q8_0", "up_proj": {"bits": 16}})
    assert plan.entries["model.layers.0.self_attn.o_proj"].scheme == gguf_scheme("q8_0")
    assert not plan.entries["model.layers.0.mlp.up_proj"].scheme.is_quantized


@pytest.mark.parametrize("order", [0, 1])
def test_pattern_overwrites_exact_entry_whatever_the_order(order):
    items = [("model.layers.0.mlp.up_proj", "W8A16"), ("mlp", "W2A16")]
    plan = resolve_plan(llama(), "W4A16", layer_config=dict(items if order == 0 else items[::-1]))
    e = plan.entries["model.layers.0.mlp.up_proj"]
    assert e.scheme == get_preset("W2A16") and e.pattern == "mlp"
    assert list(plan.regex_config) == ["mlp"]


def test_later_pattern_overwrites_earlier_pattern():
    plan = resolve_plan(llama(), "W4A16", layer_config={"mlp": "W8A16", "down_proj": "W2A16"})
    assert plan.entries["model.layers.0.mlp.down_proj"].scheme.bits == 2
    assert plan.entries["model.layers.0.mlp.up_proj"].scheme.bits == 8


def test_regex_keys_search_with_literal_dots_and_anchors():
    plan = resolve_plan(llama(blocks=3), "W4A16", layer_config={
        r"layers.*.self_attn.[qk]_proj": "W8A16", "^model.layers.2.mlp": "W2A16"})
    eights = {n for n, e in plan.entries.items() if e.scheme.bits == 8}
    assert eights == {f"model.layers.{i}.self_attn.{p}_proj" for i in range(3) for p in "qk"}
    assert {n for n, e in plan.entries.items() if e.scheme.bits == 2} == set(
        n for n in block(plan, 2) if ".mlp." in n)
    assert key_regex("layers.*.o_proj").search("model.layers.0.o_proj")
    assert key_regex("layers.*.o_proj").search("layersX3Xo_proj") is None
    assert key_regex("layers.1").search("model.layers.10.mlp") is None  # plain key: substring + digit rule
    with pytest.raises(LayerConfigError, match="valid regular expression"):
        resolve_plan(llama(), "W4A16", layer_config={"layers.(": "W8A16"})


def test_lm_head_requests_and_tied_embedding_refusal():
    assert resolve_plan(llama(), "W4A16", quant_lm_head=True).entries["lm_head"].scheme == W4
    e = resolve_plan(llama(), "W4A16", layer_config={"lm_head": "W8A16"}).entries["lm_head"]
    assert e.scheme == W8 and e.source == "user"
    for kwargs in ({"quant_lm_head": True}, {"layer_config": {"lm_head": "W8A16"}}):
        with pytest.raises(LayerConfigError, match="tied"):
            resolve_plan(llama(), "W4A16", tied_embeddings=True, **kwargs)
    kept = resolve_plan(llama(), "W4A16", tied_embeddings=True, layer_config={"lm_head": {"bits": 16}})
    assert not kept.entries["lm_head"].scheme.is_quantized
    ignored = resolve_plan(llama(), "W4A16", tied_embeddings=True, quant_lm_head=True, ignore_layers="lm_head")
    assert ignored.entries["lm_head"].source == "ignore"
    gguf = resolve_plan(smollm2(), "gguf:q4_k_m", tied_embeddings=True, quant_lm_head=True)
    assert gguf.entries["lm_head"].scheme.is_quantized


def test_lm_head_name_override_and_missing_lm_head():
    layers = llama()[:-1] + [LayerInfo("model.proj_out", 256, 1024, in_block=False)]
    plan = resolve_plan(layers + [LayerInfo("model.vision_proj", 256, 256, in_block=False)], "W4A16",
                        quant_lm_head=True, lm_head_name="model.proj_out")
    assert plan.lm_head == "model.proj_out" and plan.entries["model.proj_out"].scheme == W4
    assert plan.entries["model.vision_proj"].reason == "outside the quantized blocks"
    with pytest.raises(LayerConfigError, match="lm_head_name"):
        resolve_plan(llama(), "W4A16", lm_head_name="output")
    with pytest.raises(LayerConfigError, match="no layer outside the blocks"):
        resolve_plan(llama()[1:-1], "W4A16", quant_lm_head=True)


def test_moe_routers_stay_16bit_unless_named_exactly():
    plan = resolve_plan(moe(), "W4A16", layer_config={"mlp": "W8A16"})
    for r in ("model.layers.0.mlp.gate", "model.layers.0.mlp.shared_expert_gate"):
        assert plan.entries[r].source == "predefined" and not plan.entries[r].scheme.is_quantized
    assert plan.entries["model.layers.0.mlp.experts.3.down_proj"].scheme == W8
    assert plan.entries["model.layers.0.self_attn.q_proj"].scheme == W4
    named = resolve_plan(moe(), "W4A16", layer_config={"model.layers.0.mlp.gate": "W4A4"})
    assert named.entries["model.layers.0.mlp.gate"].scheme == get_preset("W4A4")
    flagged = [LayerInfo("m.layers.0.router", 128, 64, is_router=True), LayerInfo("m.layers.0.fc", 128, 64)]
    assert resolve_plan(flagged, "W4A16").quantized() == ["m.layers.0.fc"]
    dense = [LayerInfo("m.layers.0.mlp.gate", 128, 64)]  # '.gate' outside an MoE model is an ordinary layer
    assert resolve_plan(dense, "W4A16").quantized() == ["m.layers.0.mlp.gate"]


def test_int_weight_only_fallback_needs_in_and_out_multiple_of_32():
    layers = [LayerInfo("m.layers.0.a", 128, 100), LayerInfo("m.layers.0.b", 48, 128),
              LayerInfo("m.layers.0.c", 128, 128)]
    plan = resolve_plan(layers, "W4A16")
    assert plan.quantized() == ["m.layers.0.c"]
    assert [n for n, _ in plan.fallbacks] == ["m.layers.0.a", "m.layers.0.b"]
    assert "out_features=100" in plan.entries["m.layers.0.a"].reason
    assert "in_features=48" in plan.entries["m.layers.0.b"].reason
    assert plan.entries["m.layers.0.a"].source == "fallback" and plan.entries["m.layers.0.a"].fixed_by_user
    # activation-quantized int and GGUF-format exports are not bound by the packing rule
    assert "m.layers.0.a" in resolve_plan(layers, "W4A4").quantized()


def test_group_larger_than_in_features_becomes_per_channel_noted():
    plan = resolve_plan([LayerInfo("m.layers.0.a", 64, 64), LayerInfo("m.layers.0.b", 256, 64)], "W4A16")
    e = plan.entries["m.layers.0.a"]
    assert e.scheme == W4.replace(group_size=-1) and "one group per channel" in e.reason
    assert plan.fallbacks == [("m.layers.0.a", e.reason)] and plan.entries["m.layers.0.b"].scheme == W4


@pytest.mark.parametrize("preset, bad, good", [("MXFP4", 48, 64), ("NVFP4", 24, 32), ("MXFP8", 80, 96)])
def test_mx_nv_fallback_when_group_does_not_divide_in_features(preset, bad, good):
    plan = resolve_plan([LayerInfo("m.layers.0.a", bad, 64), LayerInfo("m.layers.0.b", good, 64)], preset)
    a = plan.entries["m.layers.0.a"]
    assert not a.scheme.is_quantized and not a.scheme.quantizes_activations and f"in_features={bad}" in a.reason
    assert plan.entries["m.layers.0.b"].scheme == get_preset(preset)


def test_gguf_smollm2_kquant_fallback_chain():
    plan = resolve_plan(smollm2(), "gguf:q4_k_m", tied_embeddings=True)
    s = block(plan, 0)
    for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj"):
        assert s[f"model.layers.0.{n}"] == gguf_scheme("q5_0")
        assert "576 not a multiple of 256" in plan.entries[f"model.layers.0.{n}"].reason
    assert s["model.layers.0.mlp.down_proj"] == gguf_scheme("q4_k_m")  # 1536 = 6 * 256
    # tied embeddings serve as the output tensor: q6_k, which falls back to q8_0 at width 576
    assert plan.entries["model.embed_tokens"].scheme == gguf_scheme("q8_0")
    head = plan.entries["lm_head"]  # not tuned apart (that would untie it and store a second copy)
    assert not head.scheme.is_quantized and "token_embd" in head.reason
    assert len(plan.fallbacks) == 2 * 6 + 1
    untied = resolve_plan(smollm2(), "gguf:q4_k_m")
    assert untied.entries["model.embed_tokens"].scheme == gguf_scheme("q5_0")
    assert resolve_plan(smollm2(), "gguf:q8_0").entries["lm_head"].scheme == gguf_scheme("q8_0")


def test_rule_schemes_replace_the_default_keep_shape_fallbacks_and_lose_to_user_entries():
    q6 = gguf_scheme("q6_k")
    rules = {"model.layers.0.self_attn.v_proj": q6, "model.layers.0.mlp.down_proj": q6,
             "model.layers.1.mlp.down_proj": q6, "model.layers.1.self_attn.o_proj": gguf_scheme("q4_k_m")}
    plan = resolve_plan(smollm2(), "gguf:q4_k_m", tied_embeddings=True, rule_schemes=rules,
                        layer_config={"model.layers.1.mlp.down_proj": "gguf:q3_k"})
    down0 = plan.entries["model.layers.0.mlp.down_proj"]
    assert down0.scheme == q6 and down0.source == "default"
    assert "per-tensor rule of gguf:q4_k_m: gguf:q6_k" in down0.reason
    v0 = plan.entries["model.layers.0.self_attn.v_proj"]  # q6_k asked, 576 wide: llama.cpp's q8_0
    assert v0.scheme == gguf_scheme("q8_0") and v0.source == "fallback" and "per-tensor rule" in v0.reason
    assert plan.entries["model.layers.1.mlp.down_proj"].scheme == gguf_scheme("q3_k")  # layer_config wins
    o1 = plan.entries["model.layers.1.self_attn.o_proj"]  # a rule equal to the default changes nothing
    assert o1.scheme == gguf_scheme("q5_0") and "per-tensor rule" not in o1.reason
    assert resolve_plan(smollm2(), "gguf:q4_k_m", tied_embeddings=True).schemes() == \
        resolve_plan(smollm2(), "gguf:q4_k_m", tied_embeddings=True, rule_schemes={}).schemes()


def test_gguf_falls_back_to_bf16_when_32_does_not_divide():
    layers = [LayerInfo("m.layers.0.a", 272, 64), LayerInfo("m.layers.0.b", 512, 64)]
    plan = resolve_plan(layers, "gguf:q2_k_s")
    a = plan.entries["m.layers.0.a"]
    assert not a.scheme.is_quantized
    assert "256" in a.reason and "q4_0" in a.reason and "bf16" in a.reason  # llama.cpp: q2_k rows -> q4_0
    assert plan.entries["m.layers.0.b"].scheme == gguf_scheme("q2_k_s")
    legacy = resolve_plan([LayerInfo("m.layers.0.a", 48, 64), LayerInfo("m.layers.0.b", 64, 64)], "gguf:q4_0")
    assert legacy.quantized() == ["m.layers.0.b"]


def test_scheme_no_layer_can_hold_is_refused_up_front():
    narrow = [LayerInfo(f"m.layers.{i}.fc", 48, 48) for i in range(3)]
    for preset in ("W4A16", "MXFP4"):
        with pytest.raises(LayerConfigError, match="default scheme.*fits none of the 3 layer"):
            resolve_plan(narrow, preset)
    with pytest.raises(LayerConfigError, match=r"layer_config\['k_proj'\].*fits none"):
        resolve_plan(llama(hidden=96), "W4A16", layer_config={"k_proj": "MXFP4"})
    loose = resolve_plan(llama(hidden=96), "W4A16", layer_config={"k_proj": "MXFP4"}, strict=False)
    assert loose.entries["model.layers.0.self_attn.k_proj"].source == "fallback"
    assert resolve_plan(narrow, "BF16").quantized() == []  # nothing asked to be quantized: no error


def test_fused_group_follows_a_member_forced_to_16bit():
    layers = [LayerInfo("m.layers.0.q", 128, 128, fused_group="qkv"),
              LayerInfo("m.layers.0.k", 128, 40, fused_group="qkv"),
              LayerInfo("m.layers.0.v", 128, 128, fused_group="qkv"), LayerInfo("m.layers.0.o", 128, 128)]
    plan = resolve_plan(layers, "W4A16")
    assert plan.quantized() == ["m.layers.0.o"]
    assert "fused with m.layers.0.k" in plan.entries["m.layers.0.q"].reason
    assert [n for n, _ in plan.fallbacks] == ["m.layers.0.q", "m.layers.0.k", "m.layers.0.v"]


def test_embeddings_quantized_only_for_gguf():
    with pytest.raises(LayerConfigError, match="only for GGUF"):
        resolve_plan(llama(), "W4A16", layer_config={"model.embed_tokens": "W8A16"})
    plan = resolve_plan(llama(), "W4A16", layer_config={"embed": "W8A16", "mlp": "W8A16"})
    assert not plan.entries["model.embed_tokens"].scheme.is_quantized
    gguf = resolve_plan(llama(), "W4A16", format="gguf", layer_config={"model.embed_tokens": "gguf:q8_0"})
    assert gguf.entries["model.embed_tokens"].scheme == gguf_scheme("q8_0")


def test_bad_arguments_raise_layer_config_errors():
    cases = [dict(layer_config=["mlp"]), dict(ignore_layers=3), dict(ignore_layers=["a", 1]),
             dict(layer_config={"": "W8A16"}), dict(format=5)]
    for kwargs in cases:
        with pytest.raises(LayerConfigError):
            resolve_plan(llama(), "W4A16", **kwargs)
    with pytest.raises(LayerConfigError, match="repeats"):
        resolve_plan(llama() + llama()[:1], "W4A16")
    with pytest.raises(LayerConfigError, match="positive int"):
        resolve_plan([LayerInfo("a", 0, 4)], "W4A16")


def test_json_round_trip_and_table():
    plan = resolve_plan(moe(), "MXFP4", layer_config={"experts.*.down_proj": "W8A16"}, ignore_layers="q_proj",
                        quant_lm_head=True)
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.regex_config["experts.*.down_proj"] == W8
    table = plan.to_table().splitlines()
    assert len(table) == len(plan.entries) + 1 and table[0].split()[:3] == ["layer", "bits", "group"]
    assert any("model.layers.0.mlp.gate" in row and "MoE router" in row for row in table)
    fp8 = resolve_plan(llama(), "FP8_BLOCK")
    assert Plan.from_json(fp8.to_json()) == fp8  # tuple group sizes survive JSON
    with pytest.raises(LayerConfigError, match="malformed"):
        Plan.from_json('{"default": {}}')
