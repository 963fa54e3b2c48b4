"""The worked examples of the extension guides (docs/extend/*.md) run as written.

The ```python blocks of one guide are joined in order into one script (later blocks use what earlier ones defined)
and run in a fresh interpreter in a temporary directory, so the plugins a guide registers never leak into other
tests' registries.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "extend").glob("*.md"))
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(markdown: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a markdown text, in order."""
    return FENCE.findall(markdown)


def test_python_blocks_takes_only_python_fences():
    text = "intro\n```python\na = 1\n```\n```toml\nx = 2\n```\n```python\nb = a\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a\n"]


def test_every_extension_guide_exists_with_an_example():
    names = {g.stem for g in GUIDES if python_blocks(g.read_text())}
    assert names >= {"data-type", "export-format", "backend", "model-family", "vlm-family"}


@pytest.mark.parametrize("guide", GUIDES, ids=[g.stem for g in GUIDES])
def test_guide_example_runs(guide, tmp_path):
    script = tmp_path / f"{guide.stem}.py"
    script.write_text("\n".join(python_blocks(guide.read_text())))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "AR_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{guide.name} example failed:\n{done.stderr[-3000:]}"
