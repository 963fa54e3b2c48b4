"""Every ```python block in the package READMEs runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = sorted((ROOT / "packages").glob("*/README.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks():
    for readme in READMES:
        for i, code in enumerate(BLOCK.findall(readme.read_text())):
            yield pytest.param(code, id=f"{readme.parent.name}-{i}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README example", "exec"), {"__name__": "__readme__"})


def test_every_package_readme_has_an_example():
    missing = [r.parent.name for r in READMES if not BLOCK.search(r.read_text())]
    assert not missing, f"READMEs without a ```python example: {missing}"
