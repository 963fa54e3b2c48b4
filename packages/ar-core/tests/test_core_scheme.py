"""QuantScheme validation and preset parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ar_core.errors import ArError, SchemeError
from ar_core.presets import GGUF_MIXES, PRESETS, get_preset, parse_scheme
from ar_core.scheme import QuantScheme

SEED_PRESETS = ["W2A16", "W2A16G32", "W2A16G64", "W3A16", "W4A16", "W5A16", "W6A16", "W8A16", "W4A16_MIXED",
                "MXFP4", "MXFP4_RCEIL", "MXFP8", "MXFP8_RCEIL", "MXINT4", "NVFP4", "FPW8A16", "FP8_STATIC",
                "FP8_BLOCK", "INT8_W8A8", "BF16", "GGUF:Q4_0", "GGUF:Q4_1", "GGUF:Q5_0", "GGUF:Q5_1", "GGUF:Q8_0",
                "GGUF:Q2_K_S", "GGUF:Q3_K_S", "GGUF:Q3_K_M", "GGUF:Q3_K_L", "GGUF:Q4_K_S", "GGUF:Q4_K_M",
                "GGUF:Q5_K_S", "GGUF:Q5_K_M", "GGUF:Q6_K"]


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_every_seed_preset_parses_case_insensitively(name):
    assert parse_scheme(name.lower()) == PRESETS[name]


def test_preset_values_match_the_reference_table():
    assert parse_scheme("W4A16") == QuantScheme(bits=4, group_size=128, sym=True, data_type="int")
    mx = parse_scheme("MXFP4")
    assert (mx.bits, mx.group_size, mx.data_type, mx.act_bits, mx.act_data_type) == (4, 32, "mx_fp", 4, "mx_fp")
    nv = parse_scheme("NVFP4")
    assert (nv.group_size, nv.act_data_type) == (16, "nv_fp4_with_static_gs")
    assert parse_scheme("FP8_BLOCK").group_size == (128, 128)
    fp8s = parse_scheme("FP8_STATIC")
    assert (fp8s.group_size, fp8s.act_group_size, fp8s.act_dynamic) == (-1, 0, False)
    q4km = parse_scheme("gguf:q4_k_m")
    assert (q4km.bits, q4km.group_size, q4km.sym, q4km.super_bits, q4km.super_group_size, q4km.scale_dtype) == \
        (4, 32, False, 6, 8, "float32")
    assert q4km.gguf == "q4_k_m" and set(GGUF_MIXES) >= {"q2_k_s", "q6_k"}


def test_user_overrides_apply_and_are_validated():
    s = parse_scheme("W4A16", group_size=32, sym=False)
    assert (s.bits, s.group_size, s.sym) == (4, 32, False)
    assert parse_scheme({"scheme": "W2A16", "group_size": 64}).group_size == 64
    assert parse_scheme("W4A16", data_type="mx_fp4", group_size=32).data_type == "mx_fp"
    assert parse_scheme("w4g32") == QuantScheme(bits=4, group_size=32)


@pytest.mark.parametrize("kwargs, field", [
    ({"bits": 7}, "bits"), ({"group_size": -5}, "group_size"), ({"data_type": "int9"}, "data_type"),
    ({"group_size": (128, 128)}, "group_size"), ({"scale_dtype": "float64"}, "scale_dtype"),
    ({"act_bits": 5}, "act_bits"), ({"data_type": "mx_fp", "group_size": 64}, "group_size"),
    ({"data_type": "nv_fp", "sym": False, "group_size": 16}, "sym"), ({"super_bits": 6}, "super_bits"),
])
def test_impossible_combinations_name_the_field(kwargs, field):
    with pytest.raises(SchemeError, match=rf"^{field}="):
        parse_scheme("W4A16", **kwargs)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(SchemeError, match="W4A16") as err:
        get_preset("W4A17")
    assert "scheme='W4A17'" in str(err.value)


def test_gguf_presets_refuse_overrides():
    with pytest.raises(SchemeError, match="GGUF"):
        parse_scheme("GGUF:Q4_K_M", bits=3)


def test_scheme_is_immutable():
    s = parse_scheme("W4A16")
    with pytest.raises(Exception):
        s.bits = 2  # type: ignore[misc]
    assert s.replace(bits=2).bits == 2 and s.bits == 4


@given(st.one_of(st.text(max_size=20), st.dictionaries(st.sampled_from(["bits", "group_size", "sym", "data_type",
       "scheme", "act_bits", "nope"]), st.one_of(st.integers(-3, 300), st.text(max_size=8), st.booleans(),
       st.none()), max_size=4)))
def test_any_input_parses_or_raises_our_error(value):
    try:
        parse_scheme(value)
    except ArError:
        pass
