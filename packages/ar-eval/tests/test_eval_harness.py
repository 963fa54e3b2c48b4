"""The lm-eval wrapper on an offline task read from local files."""

from __future__ import annotations

import pytest

from ar_core.errors import DataError, PluginError
from ar_eval.harness import run_lm_eval, write_choice_task

ROWS = [{"question": f"Question {i}?", "choices": ["same answer", "same answer"], "answer": a}
        for i, a in enumerate([0, 1, 0, 0])]


@pytest.mark.slow
def test_lm_eval_local_task_counts_rows(tiny_dir, tmp_path):
    # Identical choices tie, so lm-eval picks choice 0: accuracy is the share of rows whose answer is 0.
    tasks = write_choice_task(tmp_path / "tasks", "ar_tiny_choice", ROWS)
    full = run_lm_eval(tiny_dir, ["ar_tiny_choice"], include_path=tasks, eval_bs=2)
    assert full["ar_tiny_choice"]["acc"] == pytest.approx(3 / 4)
    part = run_lm_eval(tiny_dir, ["ar_tiny_choice"], include_path=tasks, eval_bs=2, limit=2)
    assert part["ar_tiny_choice"]["acc"] == pytest.approx(1 / 2)


def test_lm_eval_rejects_unknown_backend_and_empty_tasks(tiny_dir):
    with pytest.raises(PluginError, match="eval_backend"):
        run_lm_eval(tiny_dir, ["x"], backend="tgi")
    with pytest.raises(DataError, match="tasks"):
        run_lm_eval(tiny_dir, [])


def test_write_choice_task_needs_rows(tmp_path):
    with pytest.raises(DataError, match="rows"):
        write_choice_task(tmp_path, "t", [])
