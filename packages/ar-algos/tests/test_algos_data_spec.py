"""The calibration dataset grammar: parse_dataset_spec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_algos.data import DatasetSpec, parse_dataset_spec
from ar_core.errors import ArError, DataError


def test_reference_example():
    specs = parse_dataset_spec("./tmp.json,NeelNanda/pile-10k:num=256,mbpp:num=128:split=train+validation")
    assert specs == [
        DatasetSpec("./tmp.json"),
        DatasetSpec("NeelNanda/pile-10k", num=256),
        DatasetSpec("mbpp", num=128, split=("train", "validation")),
    ]


def test_whitespace_and_case_of_options():
    assert parse_dataset_spec("  wiki : NUM = 8 : Concat ,  pydoc:concat=False ") == [
        DatasetSpec("wiki", num=8, concat=True), DatasetSpec("pydoc", concat=False)]


@pytest.mark.parametrize("option, expected", [
    ("apply_chat_template", True), ("apply_chat_template=true", True), ("apply_chat_template=0", False)])
def test_chat_template_flag(option, expected):
    assert parse_dataset_spec(f"wiki:{option}")[0].apply_chat_template is expected


def test_system_prompt_is_quoted_enables_template_and_does_not_leak():
    specs = parse_dataset_spec('wiki:system_prompt="Be brief, precise: always.":num=2,pydoc,mbpp:system_prompt=Hi')
    assert specs[0] == DatasetSpec("wiki", num=2, apply_chat_template=True, system_prompt="Be brief, precise: always.")
    assert specs[1] == DatasetSpec("pydoc")
    assert specs[2].system_prompt == "Hi" and specs[2].apply_chat_template


def test_quotes_escapes_and_quoted_names():
    specs = parse_dataset_spec(r"""'/data/a,b:c.jsonl':num=3,wiki:system_prompt='it\'s "ok"'""")
    assert specs[0] == DatasetSpec("/data/a,b:c.jsonl", num=3)
    assert specs[1].system_prompt == 'it\'s "ok"'


@pytest.mark.parametrize("spec, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("wiki,,pydoc", "empty dataset name"),
    (":num=3", "empty dataset name"),
    ("wiki:nums=3", "unknown option 'nums=3'; allowed options: num, concat"),
    ("wiki:num=0", "num='0' is not allowed"),
    ("wiki:num=-2", "num='-2' is not allowed"),
    ("wiki:num=3.5", "num='3.5' is not allowed"),
    ("wiki:num", "num=None is not allowed"),
    ("wiki:num=99999999999", "not allowed"),
    ("wiki:num=٣", "not allowed"),
    ("wiki:concat=maybe", "concat='maybe' is not allowed"),
    ("wiki:split=", "split='' is not allowed"),
    ("wiki:split=train+", "split='train\\+' is not allowed"),
    ("wiki:num=2:num=3", "given twice"),
    ("wiki:system_prompt", "system_prompt needs a value"),
    ("wiki:system_prompt=x:apply_chat_template=false", "needs the chat template"),
    ('wiki:system_prompt="open', "unterminated"),
])
def test_malformed_specs(spec, message):
    with pytest.raises(DataError, match=message):
        parse_dataset_spec(spec)


def test_non_string_spec():
    with pytest.raises(DataError, match="must be a string"):
        parse_dataset_spec(["wiki"])


_PIECES = st.sampled_from([",", ":", "=", "+", '"', "'", "\\", " ", "num", "concat", "split", "system_prompt",
                           "apply_chat_template", "wiki", "true", "false", "0", "7", "-1", "a/b", "\x00", "é"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(_PIECES, max_size=14).map("".join)))
def test_any_string_parses_or_raises_an_ar_error(spec):
    try:
        specs = parse_dataset_spec(spec)
    except ArError:
        return
    assert specs and all(isinstance(s, DatasetSpec) and s.name for s in specs)
    assert all(s.num is None or s.num >= 1 for s in specs)
    assert all(s.apply_chat_template or s.system_prompt is None for s in specs)
