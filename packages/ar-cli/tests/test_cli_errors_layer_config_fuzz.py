"""Fuzz of `--layer_config`: any string either parses (relaxed JSON) or is a UsageError naming the flag (exit 2),
and whatever parses then resolves to a plan or raises an ArError subclass (exit 1) - never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ar_cli.flags import UsageError, relaxed_json
from ar_core.errors import ArError
from ar_core.layer_config import LayerInfo, resolve_plan

LAYERS = [LayerInfo(f"model.layers.{i}.{n}", 128, 128) for i in range(2)
          for n in ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj")] + [
    LayerInfo("lm_head", 128, 256, in_block=False)]
PIECES = st.sampled_from(["{", "}", "[", "]", ":", ",", '"', "\\", " ", "k_proj", "q_proj", "layers.0", ".*", "(",
                          "bits", "group_size", "data_type", "sym", "scheme", "8", "-1", "4.5", "1e3", "true",
                          "null", "W4A16", "mx_fp", "gguf:q4_k", "lm_head", "é", "\x00", ".json", "NaN"])


def _check(text: str) -> None:
    try:
        value = relaxed_json(text, "--layer_config")
    except UsageError as exc:
        assert str(exc).startswith("--layer_config")
        return
    try:
        resolve_plan(LAYERS, "W4A16", layer_config=value)
    except ArError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=40), st.lists(PIECES, max_size=16).map("".join)))
@example("{k_proj:{bits:8}")
@example("x" * 300 + ".json")
@example("[" * 5000 + "]" * 5000)
@example("{k_proj:{bits:8},lm_head:W8A16}")
def test_any_layer_config_string_parses_or_raises_a_project_error(text):
    _check(text)


def test_a_json_file_that_is_not_text_is_a_usage_error(tmp_path):
    path = tmp_path / "lc.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(UsageError, match="--layer_config"):
        relaxed_json(str(path), "--layer_config")
