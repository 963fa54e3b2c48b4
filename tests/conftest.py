"""Fixtures shared by the packaging tests: the uv command and one build of every workspace wheel per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def uv() -> list[str]:
    """The uv command ($UV, uv on PATH, or `python -m uv` from the dev group)."""
    exe = os.environ.get("UV") or shutil.which("uv")
    if exe:
        return [exe]
    return [sys.executable, "-m", "uv"]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory, uv) -> Path:
    """A folder holding one freshly built wheel per workspace package."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([*uv, "build", "--all-packages", "--wheel", "-o", str(out)], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    return out
