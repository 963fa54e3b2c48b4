"""Fuzz of `--dataset` / dataset=: any string either parses and names a source (a registered name, a local file, a
hub id) or raises an ArError subclass - never another exception. (`test_algos_data_spec.py` fuzzes the parser
alone; this goes one step further, to the source each parsed spec resolves to.)"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ar_algos.data.sources import resolve_source
from ar_algos.data.spec import parse_dataset_spec
from ar_core.errors import ArError

PIECES = st.sampled_from([",", ":", "=", "+", '"', "'", "\\", " ", "/", ".", "~", "..", "num", "concat", "split",
                          "system_prompt", "apply_chat_template", "wiki", "pile-10k", "austen", "owner/name", ".txt",
                          ".json", "/tmp", "/dev/null", "x" * 300, "true", "0", "7", "\x00", "é"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=30), st.lists(PIECES, max_size=10).map("".join)))
@example("/tmp")
@example("x" * 300 + ".txt")
@example("a/b/c")
@example("wiki:num=2,/no/such.jsonl")
def test_any_dataset_string_resolves_or_raises_an_ar_error(text):
    try:
        sources = [resolve_source(spec) for spec in parse_dataset_spec(text)]
    except ArError:
        return
    assert sources and all(s is not None for s in sources)
