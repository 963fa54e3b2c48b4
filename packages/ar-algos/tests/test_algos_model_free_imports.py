"""Model-free workers import only what they need: torch, safetensors, ar_core and the format writer, never
transformers or datasets; `ar_algos` itself imports its public names on first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import ar_algos

HEAVY = ("transformers", "datasets")

# Runs one shard task in this fresh process and in a fork-server worker (the mode's real worker entry), then
# prints which heavy packages each process imported.
WORKER_SCRIPT = textwrap.dedent("""
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import torch
    from safetensors.torch import save_file

    from ar_core.presets import parse_scheme
    from ar_core.registry import FORMATS
    from ar_algos.model_free.worker import ShardTask, _forkserver_context, describe_layers, quantize_shard

    HEAVY = {heavy!r}
    tmp = sys.argv[1]
    save_file({{"a.weight": torch.randn(64, 64, dtype=torch.bfloat16), "n.weight": torch.ones(64)}},
              f"{{tmp}}/src.safetensors")
    layers = describe_layers([("a", parse_scheme("W4A16G32"), (64, 64))])
    task = ShardTask(f"{{tmp}}/src.safetensors", f"{{tmp}}/part.safetensors", ["a.weight", "n.weight"],
                     {{"a.weight": ("a", False)}}, layers, FORMATS.get("auto_round"), "bfloat16")
    assert quantize_shard(task).outputs["a.weight"] == ["a.qweight", "a.qzeros", "a.scales"]
    print("parent", [m for m in HEAVY if m in sys.modules])
    with ProcessPoolExecutor(max_workers=1, mp_context=_forkserver_context()) as pool:
        assert pool.submit(quantize_shard, task).result().outputs["n.weight"] == ["n.weight"]
        loaded = pool.submit(eval, f"[m for m in {{HEAVY!r}} if m in __import__('sys').modules]").result()
    print("worker", loaded)
""")


def test_importing_ar_algos_defers_transformers():
    code = "import sys, ar_algos, ar_algos.model_free; print([m for m in %r if m in sys.modules])" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_model_free_worker_entry_never_imports_transformers(tmp_path):
    pytest.importorskip("ar_export")
    proc = subprocess.run([sys.executable, "-c", WORKER_SCRIPT.format(heavy=HEAVY), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == ["parent []", "worker []"], proc.stdout


def test_public_names_import_lazily_and_stay_the_same():
    from ar_algos import AutoRound, TuneConfig
    from ar_algos.autoround import AutoRound as Defined

    assert AutoRound is Defined and TuneConfig is ar_algos.config.TuneConfig
    assert ar_algos.__all__ == ["AutoRound", "AutoScheme", "RECIPES", "TuneConfig"]
    assert set(ar_algos.__all__) <= set(dir(ar_algos)) and "default" in ar_algos.RECIPES
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        ar_algos.missing  # noqa: B018
