"""Every package builds as a wheel, and the ar-core wheel installs alone into a fresh venv and works."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())


def test_every_package_builds_a_wheel(wheels):
    built = {p.name.split("-")[0].replace("_", "-") for p in wheels.glob("*.whl")}
    assert built == set(PACKAGES)


def test_core_wheel_requires_only_torch_numpy_safetensors(wheels):
    whl = next(wheels.glob("ar_core-*.whl"))
    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    reqs = {line.split(":", 1)[1].strip().split(">")[0].split("=")[0].split("<")[0].strip()
            for line in meta.splitlines() if line.startswith("Requires-Dist:")}
    assert reqs == {"torch", "numpy", "safetensors"}


@pytest.mark.slow
def test_core_wheel_installs_alone_and_quantizes(wheels, uv, tmp_path):
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    py = venv / "bin" / "python"
    whl = next(wheels.glob("ar_core-*.whl"))
    import numpy
    import safetensors
    import torch

    pins = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={numpy.__version__}",
            f"safetensors=={safetensors.__version__}"]
    subprocess.run([*uv, "pip", "install", "-q", "--python", str(py), str(whl), *pins], check=True, env=env)
    code = (
        "import importlib.util, torch\n"
        "from ar_core.presets import parse_scheme\n"
        "from ar_core.quant import quantize, fake_quantize\n"
        "w = torch.randn(64, 128)\n"
        "s = parse_scheme('W4A16', group_size=32)\n"
        "qt = quantize(w, s)\n"
        "assert torch.equal(qt.dequantize(), fake_quantize(w, s))\n"
        "assert importlib.util.find_spec('transformers') is None\n"
        "assert all(importlib.util.find_spec(p) is None for p in ('ar_algos', 'ar_export', 'ar_kernels'))\n"
        "print('ok')\n"
    )
    out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "ok"
