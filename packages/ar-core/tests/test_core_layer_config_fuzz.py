"""Fuzz: any layer_config / ignore_layers either resolves to a complete plan or raises an ArError subclass."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ar_core.errors import ArError
from ar_core.layer_config import LayerInfo, Plan, resolve_plan
from ar_core.presets import preset_names
from ar_core.quant import data_type_names
from ar_core.scheme import field_names

LAYERS = [LayerInfo("model.embed_tokens", 128, 512, kind="embedding", in_block=False)] + [
    LayerInfo(f"model.layers.{i}.{n}", a, b, kind="expert" if "experts" in n else "linear")
    for i in range(2)
    for n, a, b in (("self_attn.q_proj", 128, 128), ("self_attn.k_proj", 128, 40), ("mlp.gate", 128, 4),
                    ("mlp.experts.0.down_proj", 256, 128), ("mlp.fc1", 96, 576))
] + [LayerInfo("lm_head", 128, 512, in_block=False)]

FRAGMENTS = ["layers", "layers.1", "q_proj", "mlp", ".*", "experts.*.down", "^model", "lm_head", "embed", "gate",
             "model.layers.0.mlp.fc1", "[", "(?P<x", "\\", "fc1", ","]
key = st.one_of(st.text(max_size=12), st.sampled_from(FRAGMENTS),
                st.lists(st.sampled_from(FRAGMENTS), max_size=3).map("".join))
scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True), st.text(max_size=8),
                   st.sampled_from(preset_names() + data_type_names() + ["mx_fp4", "int8", "gguf:q6_k"]),
                   st.lists(st.integers(-2, 200), max_size=3))
scheme_dict = st.dictionaries(st.sampled_from(field_names() + ["scheme", "fixed_by_user", "junk"]), scalar,
                              max_size=4)
bits_only = st.fixed_dictionaries({"bits": st.sampled_from([2, 4, 8, 16])})
valid_value = st.one_of(st.sampled_from(preset_names()), bits_only)
value = st.one_of(valid_value, scheme_dict, scalar)
entries = st.dictionaries(key, value, max_size=4)
layer_config = st.one_of(entries, st.dictionaries(st.sampled_from(FRAGMENTS), valid_value, max_size=3), st.none(),
                         scalar, st.dictionaries(st.integers(), value, max_size=2))
ignore = st.one_of(st.none(), key, st.lists(key, max_size=3), st.integers(), st.lists(st.integers(), max_size=2))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_config=layer_config, ignore_layers=ignore, strict=st.booleans(), quant_lm_head=st.booleans(),
       tied=st.booleans(), fmt=st.sampled_from([None, "auto_round", "gguf"]),
       scheme=st.sampled_from(["W4A16", "W2A16G32", "MXFP4", "NVFP4", "gguf:q4_k_m", "FP8_BLOCK", "BF16"]))
def test_any_user_input_resolves_or_raises_ar_error(layer_config, ignore_layers, strict, quant_lm_head, tied, fmt,
                                                    scheme):
    try:
        plan = resolve_plan(LAYERS, scheme, layer_config=layer_config, ignore_layers=ignore_layers, strict=strict,
                            quant_lm_head=quant_lm_head, tied_embeddings=tied, format=fmt)
    except ArError:
        return
    assert list(plan.entries) == [x.name for x in LAYERS]
    assert {n for n, _ in plan.fallbacks} == {n for n, e in plan.entries.items() if e.source == "fallback"}
    assert not any(plan.entries[n].scheme.is_quantized for n in ("model.layers.0.mlp.gate", "model.layers.1.mlp.gate")
                   if plan.entries[n].source != "user")
    assert Plan.from_json(plan.to_json()) == plan
