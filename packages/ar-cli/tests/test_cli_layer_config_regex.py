r"""`\.` in a --layer_config regex: accepted quoted or not, and it selects the layers it names."""

import pytest

from ar_cli.flags import relaxed_json
from ar_core.plan.resolve import resolve_plan
from ar_core.plan.types import LayerInfo

LAYERS = [LayerInfo(f"model.layers.{i}.mlp.{p}_proj", 256, 256) for i in (0, 1, 10) for p in ("up", "gate", "down")]


@pytest.mark.parametrize("text", [r'{"model\.layers\.1\.mlp\.(up|gate)_proj": {bits: 8}}',
                                  r"{model\.layers\.1\.mlp\.(up|gate)_proj: {bits: 8}}",
                                  r'{"model\\.layers\\.1\\.mlp\\.(up|gate)_proj": {"bits": 8}}'])
def test_escaped_dots_parse_and_select_their_layers(text):
    config = relaxed_json(text, "--layer_config")
    assert config == {r"model\.layers\.1\.mlp\.(up|gate)_proj": {"bits": 8}}
    bits = {n: s.bits for n, s in resolve_plan(LAYERS, "W4A16", layer_config=config).schemes().items()}
    assert {n for n, b in bits.items() if b == 8} == {"model.layers.1.mlp.up_proj", "model.layers.1.mlp.gate_proj"}


def test_a_plain_escaped_key_is_a_regex_not_a_literal():
    config = relaxed_json(r'{"layers\.1\.mlp\.down_proj": {bits: 8}}', "--layer_config")
    bits = {n: s.bits for n, s in resolve_plan(LAYERS, "W4A16", layer_config=config).schemes().items()}
    assert [n for n, b in bits.items() if b == 8] == ["model.layers.1.mlp.down_proj"]


def test_json_escapes_keep_their_meaning():
    assert relaxed_json(r'{"a": "x\ty\\z\"q\u0041"}', "--x") == {"a": 'x\ty\\z"qA'}
