"""The user guides (docs/guide/*.md) run as written, in one temporary directory per guide, block by block in order:

* every `$ ar ...` line of a ```console block (or one of the seeds' console scripts, `auto-round ...`), with each
  following output line expected in what the command prints (stdout and stderr, whitespace collapsed, so column
  widths may change);
* every ```python block, as its own script in a fresh interpreter (so each block is self-contained and can be
  copied alone), which must exit 0;
* ```text blocks are never run: the paragraph before each says "not run" (e.g. vLLM, which is not installed
  here). Other fences (```bash, ```sh) are refused, so no command in a guide goes untested by accident.

Running a guide loads the real embedded model, hence slow; the parsing rules are checked by the fast tests.
"""

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
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
RUN_LANGS = ("console", "python")
# The seeds' console scripts (packages/ar-cli/src/ar_cli/seeds.py) may appear in a guide beside `ar`.
COMMANDS = ("ar", "auto-round", "auto-round-best", "auto-round-light", "auto-round-opt-rtn", "auto-round-rtn",
            "auto-round-mllm")


def fenced_blocks(markdown: str) -> list[tuple[str, str, int]]:
    """(language, body, offset of the opening fence) of every fenced block of a markdown text, in order."""
    return [(m.group(1), m.group(2), m.start()) for m in FENCE.finditer(markdown)]


def _commands(block: str) -> list[tuple[list[str], list[str]]]:
    """(argv, expected output lines) for every `$ ...` line of a ```console block, in order."""
    steps: list[tuple[list[str], list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            assert argv[0] in COMMANDS, f"guides document {', '.join(COMMANDS)} commands only, not {line!r}"
            steps.append((argv, []))
        elif line.strip():
            steps[-1][1].append(line.strip())
    return steps


def guide_steps(markdown: str) -> list[tuple[str, object]]:
    """What a guide runs, in order: ("command", (argv, expected lines)) and ("python", source) steps."""
    steps: list[tuple[str, object]] = []
    for lang, body, _ in fenced_blocks(markdown):
        if lang == "console":
            steps += [("command", step) for step in _commands(body)]
        elif lang == "python":
            steps.append(("python", body))
    return steps


def unrunnable_blocks(markdown: str) -> list[str]:
    """Why blocks would silently go untested: a shell fence, or a ```text block not announced as "not run"."""
    bad = []
    for lang, body, start in fenced_blocks(markdown):
        first = body.splitlines()[0] if body.strip() else ""
        if lang == "text":
            before = markdown[:start].rstrip().rsplit("\n\n", 1)[-1]
            if "not run" not in " ".join(before.lower().split()):
                bad.append(f"```text block {first!r} is not announced by a paragraph saying 'not run'")
        elif lang not in RUN_LANGS + ("json",):
            bad.append(f"```{lang} block {first!r}: use ```console ($ ar ...), ```python, or a 'not run' ```text")
    return bad


def test_guide_steps_keep_the_order_of_commands_and_python():
    text = ("```python\na = 1\n```\n```console\n$ auto-round-rtn m\nsaved  out\n$ ar eval out --windows 2\n```\n"
            "```text\nvllm serve out\n```\n")
    assert guide_steps(text) == [("python", "a = 1\n"), ("command", (["auto-round-rtn", "m"], ["saved  out"])),
                                 ("command", (["ar", "eval", "out", "--windows", "2"], []))]


def test_unrunnable_blocks_are_refused_unless_announced():
    assert unrunnable_blocks("vLLM is missing, so this is not\nrun in CI:\n\n```text\nvllm serve out\n```\n") == []
    assert len(unrunnable_blocks("```bash\nar list\n```\n```text\nvllm serve out\n```\n")) == 2


@pytest.mark.parametrize("guide", GUIDES, ids=[g.stem for g in GUIDES])
def test_guide_blocks_are_all_runnable_or_marked_not_run(guide):
    text = guide.read_text()
    assert guide_steps(text), f"{guide.name} runs nothing"
    assert unrunnable_blocks(text) == []


def test_every_guide_is_linked_from_the_docs_index():
    index = (ROOT / "docs" / "README.md").read_text()
    assert [g.name for g in GUIDES if f"guide/{g.name}" not in index] == []


def _run(argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run `ar ...` as `python -m ar_cli ...` and a seeds' script from this interpreter's bin folder."""
    command = [sys.executable, "-m", "ar_cli"] if argv[0] == "ar" else [str(Path(sys.executable).parent / argv[0])]
    return subprocess.run([*command, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES, ids=[g.stem for g in GUIDES])
def test_guide_commands_run(guide, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}  # `ar` for python
    for i, (kind, step) in enumerate(guide_steps(guide.read_text())):
        if kind == "python":
            script = tmp_path / f"{guide.stem}_block{i}.py"
            script.write_text(step)
            done = subprocess.run([sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, f"{guide.name} python block {i} failed:\n{step}\n{done.stderr[-3000:]}"
            continue
        argv, expected = step
        done = _run(argv, tmp_path, env)
        assert done.returncode == 0, f"`{shlex.join(argv)}` failed:\n{done.stderr[-3000:]}"
        printed = " ".join((done.stdout + "\n" + done.stderr).split())
        missing = [line for line in expected if " ".join(line.split()) not in printed]
        assert not missing, f"`{shlex.join(argv)}` printed no {missing}:\n{done.stdout[-3000:]}"
