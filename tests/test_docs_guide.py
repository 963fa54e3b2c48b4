"""The user guides (docs/guide/*.md) run as written: every `$ ar ...` command of their ```console blocks, in order,
in one temporary directory, with each following output line expected in the command's output (compared with
whitespace collapsed, so column widths may change). Slow: real model."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "guide").glob("*.md"))
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.S | re.M)


def console_steps(markdown: str) -> list[tuple[list[str], list[str]]]:
    """(argv after `ar`, expected output lines) for every `$ ar ...` line of the ```console blocks, in order."""
    steps: list[tuple[list[str], list[str]]] = []
    for block in CONSOLE.findall(markdown):
        for line in block.splitlines():
            if line.startswith("$ "):
                argv = shlex.split(line[2:])
                assert argv[0] == "ar", f"guides document `ar` commands only, not {line!r}"
                steps.append((argv[1:], []))
            elif line.strip():
                steps[-1][1].append(line.strip())
    return steps


def test_console_steps_pair_commands_with_output():
    text = "```console\n$ ar list schemes\nW4A16  4\n$ ar eval out --windows 2\n```\n```python\nx\n```\n"
    assert console_steps(text) == [(["list", "schemes"], ["W4A16  4"]), (["eval", "out", "--windows", "2"], [])]


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES, ids=[g.stem for g in GUIDES])
def test_guide_commands_run(guide, tmp_path):
    steps = console_steps(guide.read_text())
    assert steps, f"{guide.name} has no `$ ar ...` command"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for argv, expected in steps:
        done = subprocess.run([sys.executable, "-m", "ar_cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"`ar {shlex.join(argv)}` failed:\n{done.stderr[-3000:]}"
        printed = " ".join(done.stdout.split())
        missing = [line for line in expected if " ".join(line.split()) not in printed]
        assert not missing, f"`ar {shlex.join(argv)}` printed no {missing}:\n{done.stdout[-3000:]}"
