"""Packages depend only downward, and every import a package makes is declared in its pyproject."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
# Which workspace packages each package may depend on (DEVELOPERS.md, "Shape of the product").
ALLOWED = {
    "ar-core": set(),
    "ar-kernels": {"ar-core"},
    "ar-export": {"ar-core"},
    "ar-algos": {"ar-core"},
    "ar-mllm": {"ar-algos", "ar-core", "ar-kernels", "ar-export"},  # the last two in the [diffusion] extra
    "ar-eval": {"ar-kernels", "ar-core"},
    "ar-cli": {"ar-core", "ar-kernels", "ar-export", "ar-algos", "ar-mllm", "ar-eval"},
}
CORE_THIRD_PARTY = {"torch", "numpy", "safetensors"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(pkg: str) -> tuple[set[str], set[str]]:
    """(hard dependencies, extras dependencies) of a package, as normalized distribution names."""
    data = tomllib.loads((PACKAGES / pkg / "pyproject.toml").read_text())["project"]
    name = lambda req: _norm(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0])  # noqa: E731
    hard = {name(r) for r in data.get("dependencies", [])}
    extra = {name(r) for reqs in data.get("optional-dependencies", {}).values() for r in reqs}
    return hard, extra


def _imported_modules(src: Path) -> set[str]:
    """Top-level names of every absolute import in the package's source (including lazy ones in functions)."""
    found = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_package_exists_with_src_layout_readme_and_tests():
    for pkg in ALLOWED:
        root = PACKAGES / pkg
        assert (root / "src" / pkg.replace("-", "_") / "__init__.py").is_file(), pkg
        assert (root / "README.md").is_file(), pkg
        assert (root / "tests").is_dir(), pkg


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_workspace_dependencies_point_downward(pkg):
    hard, extra = _requirements(pkg)
    workspace = {d for d in hard | extra if d.startswith("ar-")}
    assert workspace <= ALLOWED[pkg], f"{pkg} depends on {sorted(workspace - ALLOWED[pkg])}, not allowed"


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_imports_are_declared(pkg):
    hard, extra = _requirements(pkg)
    declared = hard | extra
    own = pkg.replace("-", "_")
    dists = md.packages_distributions()
    problems = []
    for mod in sorted(_imported_modules(PACKAGES / pkg / "src")):
        if mod == own or mod in sys.stdlib_module_names or mod == "__future__":
            continue
        owners = {_norm(d) for d in dists.get(mod, [])} or {_norm(mod)}
        if mod.startswith("ar_"):
            owners = {_norm(mod)}
        if not owners & declared:
            problems.append(f"{mod} (from {sorted(owners)})")
    assert not problems, f"{pkg} imports undeclared modules: {problems}"


def test_core_depends_only_on_torch_numpy_safetensors():
    hard, extra = _requirements("ar-core")
    assert hard == CORE_THIRD_PARTY and not extra
