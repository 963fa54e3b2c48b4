"""Imports are paid for on use: `import ar_core` / `import ar_kernels` (and touching their public names) import no
transformers, torchvision, datasets, triton or mlx, and loading a checkpoint on CPU imports none of our triton or
mlx modules (nor mlx, nor datasets). Each check runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("transformers", "torchvision", "datasets", "triton", "mlx")
OURS_NOT_ON_CPU = ("ar_kernels.triton_linear", "ar_kernels.triton_kernels", "ar_kernels.mlx_linear")


def _imported_after(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; the top-level packages and our modules it left in sys.modules."""
    script = code + textwrap.dedent("""
        import sys
        print("MODULES", " ".join(sorted(sys.modules)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES "))
    return line.split()[1:]


def _heavy(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted({m for m in modules for n in names if m == n or m.startswith(n + ".")})


def test_importing_ar_core_and_ar_kernels_imports_no_heavy_package():
    modules = _imported_after(textwrap.dedent("""
        import ar_core, ar_core.quant, ar_core.pack, ar_core.registry
        import ar_kernels
        [getattr(ar_kernels, name) for name in ar_kernels.__all__]
        ar_kernels.backend_table()
    """))
    assert "ar_kernels" in modules
    assert _heavy(modules, HEAVY + OURS_NOT_ON_CPU) == []


@pytest.mark.slow
def test_loading_on_cpu_imports_no_triton_or_mlx_module_of_ours(tmp_path):
    modules = _imported_after(textwrap.dedent(f"""
        import torch
        from ar_kernels import load
        from ar_kernels.testing import quantize_block_linears, save_quantized, tiny_llama
        model = tiny_llama(64, 128)
        save_quantized({str(tmp_path)!r}, model, quantize_block_linears(model), {{"quantization_config": {{
            "quant_method": "auto-round", "packing_format": "auto_round:auto_gptq", "bits": 4, "group_size": 32,
            "sym": True, "data_type": "int", "block_name_to_quantize": "model.layers"}}}})
        loaded = load({str(tmp_path)!r}, device="cpu")
        assert {{b for b, _ in loaded.ar_backends.values()}} == {{"cpu"}}
        loaded(torch.tensor([[1, 2, 3]]))
    """))
    assert "transformers" in modules
    assert _heavy(modules, ("datasets", "mlx") + OURS_NOT_ON_CPU) == []
