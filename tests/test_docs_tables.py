"""docs/formats.md and docs/backends.md are generated from the code's tables by docs/generate.py and kept current."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "generate.py"


def _generate_module():
    spec = importlib.util.spec_from_file_location("docs_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_tables_are_current():
    # a fresh interpreter: plugins other tests registered must not change the tables
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr


def test_tables_hold_every_format_preset_and_backend(tmp_path, monkeypatch):
    from ar_core.presets import PRESETS
    from ar_export import format_matrix
    from ar_kernels import backend_table

    gen = _generate_module()
    formats, backends = gen.render_formats(), gen.render_backends()
    assert all(f"| `{p}` |" in formats for p in PRESETS)
    assert all(f"`{f}`" in formats.splitlines()[6] for f in format_matrix())
    assert "| `W4A16` |" in formats and "| `torch` | 0 |" in backends
    assert [r["name"] for r in backend_table()] == \
        [line.split("`")[1] for line in backends.splitlines() if line.startswith("| `")]
    monkeypatch.setattr(gen, "DOCS", tmp_path)
    assert gen.stale_pages() == ["formats.md", "backends.md"]
    gen.write_pages()
    (tmp_path / "backends.md").write_text("old\n")
    assert gen.stale_pages() == ["backends.md"]
