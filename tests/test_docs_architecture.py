"""Every code reference in docs/**/*.md points at a file that exists and defines the named function or class.

References are written in backticks as `packages/<pkg>/src/<mod>/file.py:name` (a function, class or module-level
name; `Class.method` for a method) or as a bare repository path (`packages/ar-core/pyproject.toml`), so a rename or
a move makes this test fail and the page gets fixed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
REFERENCE = re.compile(r"`((?:packages|docs|tests|scripts|benchmarks)/[\w./-]+?)(?::([\w.]+))?`")
LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")


def references(text: str) -> list[tuple[str, str | None]]:
    """(path, name or None) for every backticked repository reference in a markdown text."""
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(text)]


def _defined(body: list[ast.stmt]) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update({t.id: node for t in targets if isinstance(t, ast.Name)})
    return names


def problem(path: str, name: str | None, root: Path = ROOT) -> str | None:
    """Why a reference is stale (None when the file exists and, for .py files, defines `name`)."""
    file = root / path
    if not file.exists():
        return f"{path} does not exist"
    if name is None:
        return None
    if file.suffix != ".py":
        return f"{path}:{name} names something inside a file that is not Python"
    scope = _defined(ast.parse(file.read_text()).body)
    for part in name.split("."):
        node = scope.get(part)
        if node is None:
            return f"{path} defines no {name}"
        scope = _defined(node.body) if isinstance(node, ast.ClassDef) else {}
    return None


def _all_references():
    for page in PAGES:
        for path, name in references(page.read_text()):
            yield pytest.param(path, name, id=f"{page.relative_to(ROOT)}:{path}:{name or ''}")


@pytest.mark.parametrize("path,name", list(_all_references()))
def test_reference_is_current(path, name):
    assert problem(path, name) is None, problem(path, name)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = [link for link in LINK.findall(page.read_text()) if not (page.parent / link).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_architecture_page_names_the_code_of_every_package():
    refs = references((ROOT / "docs" / "architecture.md").read_text())
    named = {p.split("/")[1] for p, n in refs if p.startswith("packages/") and n}
    packages = {p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file()}
    assert named >= packages, f"docs/architecture.md names no function of {sorted(packages - named)}"


def test_checker_reports_stale_references(tmp_path):
    (tmp_path / "m.py").write_text("class A:\n    def run(self): ...\n\ndef f(): ...\nTABLE = {}\n")
    assert references("see `docs/m.py:A.run` and `docs/x.md`, not `ar_core.registry`") == \
        [("docs/m.py", "A.run"), ("docs/x.md", None)]
    assert [problem("m.py", n, tmp_path) for n in ("A", "A.run", "f", "TABLE")] == [None] * 4
    assert problem("m.py", "g", tmp_path) == "m.py defines no g"
    assert problem("m.py", "A.stop", tmp_path) == "m.py defines no A.stop"
    assert problem("m.py", "f.x", tmp_path) == "m.py defines no f.x"
    assert problem("gone.py", None, tmp_path) == "gone.py does not exist"
    links = LINK.findall("[a](extend/x.md) [b](https://x.org) [c](#top) [d](../y.md#part)")
    assert links == ["extend/x.md", "../y.md"]
