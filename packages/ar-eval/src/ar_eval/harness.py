"""A thin wrapper around lm-eval-harness (`pip install 'ar-eval[lm-eval]'`).

Offline, lm-eval's built-in tasks cannot fetch their data from the hub: give `include_path`, a folder of task YAML
files whose data come from local files (`dataset_path: json` with absolute `dataset_kwargs.data_files`);
`write_choice_task` writes one such task.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ar_core.errors import DataError, PluginError, field_error

from .loading import load_model, load_tokenizer

BACKENDS = ("hf", "vllm")


def _require(module: str, hint: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise PluginError(f"{module} is not installed; run `{hint}`")


def run_lm_eval(model: str | Path, tasks: list[str], *, eval_bs: int | str = "auto", limit: int | float | None = None,
                num_fewshot: int | None = None, include_path: str | Path | None = None, device: str = "cpu",
                backend: str = "hf", add_bos_token: bool | None = None,
                trust_remote_code: bool = False) -> dict[str, dict[str, float]]:
    """Run lm-eval `tasks` on the checkpoint `model`; returns {task: {metric: value}}.

    backend "hf" loads the checkpoint like `ar eval` does (quantized layers through ar-kernels) and hands the
    in-memory model to lm-eval's HFLM; "vllm" passes the directory to lm-eval's vLLM model (vLLM must be installed).
    The model's own code runs only with `trust_remote_code=True`.
    """
    _require("lm_eval", "pip install 'ar-eval[lm-eval]'")
    if backend not in BACKENDS:
        raise field_error(PluginError, "eval_backend", backend, f"one of {BACKENDS}")
    if not tasks:
        raise field_error(DataError, "tasks", tasks, "a non-empty list of lm-eval task names")
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise field_error(DataError, "tasks", unknown[0], "an lm-eval task name (see `lm-eval ls tasks`) or a task "
                          "in --include_path")
    if backend == "vllm":
        _require("vllm", "pip install vllm")
        lm, model_args = "vllm", {"pretrained": str(model), "trust_remote_code": trust_remote_code}
    else:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=load_model(model, device, trust_remote_code=trust_remote_code),
                  tokenizer=load_tokenizer(model, trust_remote_code), device=device,
                  batch_size=eval_bs, add_bos_token=add_bos_token)
        model_args = None
    try:
        out = lm_eval.simple_evaluate(model=lm, model_args=model_args, tasks=list(tasks), num_fewshot=num_fewshot,
                                      batch_size=eval_bs, limit=limit, task_manager=manager, log_samples=False)
    except (ConnectionError, OSError) as exc:
        raise DataError(f"lm-eval could not read the task data ({exc}); offline, point --include_path at tasks "
                        "whose data are local files") from exc
    return {task: {k.split(",")[0]: v for k, v in metrics.items() if isinstance(v, (int, float)) and "stderr" not in k}
            for task, metrics in out["results"].items()}


def write_choice_task(folder: str | Path, name: str, rows: list[dict]) -> Path:
    """Write an offline multiple-choice lm-eval task `name` into `folder` and return the folder.

    Each row is {"question": str, "choices": [str, ...], "answer": index}; the task scores acc and acc_norm.
    """
    if not rows:
        raise field_error(DataError, "rows", rows, "at least one {question, choices, answer} row")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    yaml = "\n".join([
        f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:", f"    test: {data}",
        "test_split: test", "output_type: multiple_choice", 'doc_to_text: "{{question}}"',
        "doc_to_choice: choices", "doc_to_target: answer", "metric_list:", "  - metric: acc",
        "  - metric: acc_norm", ""])
    (folder / f"{name}.yaml").write_text(yaml)
    return folder
