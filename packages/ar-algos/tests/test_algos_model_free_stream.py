"""Model-free mode in bounded parent memory: the final shards are streamed from the workers' part files (the same
bytes `save_sharded_safetensors` writes, without holding a shard), and the plan is made from the safetensors headers
so the caller never imports transformers."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest
import torch
from safetensors.torch import save_file

from ar_core.io import save_sharded_safetensors

from ar_algos.model_free import output
from ar_algos.model_free.output import write_tensors
from ar_algos.model_free.source import read_header


def _tensors():
    """Mixed dtypes and names whose sorted order differs from the insertion order (as packed layers have)."""
    g = torch.Generator().manual_seed(0)
    return {
        "model.layers.10.mlp.qweight": torch.randint(-2**31, 2**31 - 1, (64, 96), generator=g, dtype=torch.int32),
        "model.layers.10.mlp.scales": torch.randn(3, 96, generator=g).to(torch.float16),
        "model.layers.2.norm.weight": torch.randn(96, generator=g).to(torch.bfloat16),
        "model.layers.2.mlp.codes": torch.randint(0, 255, (40, 33), generator=g, dtype=torch.uint8),
        "model.embed_tokens.weight": torch.randn(128, 96, generator=g).to(torch.bfloat16),
        "model.layers.2.bias": torch.randn(7, generator=g, dtype=torch.float32),
        "model.layers.2.ids": torch.arange(5, dtype=torch.int64),
        "model.layers.2.mask": torch.tensor([True, False, True]),
        "lm_head.fp8": torch.randn(16, 8, generator=g).to(torch.float8_e4m3fn),
    }


def _parts(tmp_path, tensors):
    """Save the tensors into two files, as two workers would; returns name -> where its bytes lie (the TensorMeta
    records a worker returns), in `tensors` order."""
    names, stored = list(tensors), {}
    for i, keys in enumerate((names[::2], names[1::2])):
        path = tmp_path / f"part-{i}.safetensors"
        save_file({k: tensors[k] for k in keys}, str(path))
        stored |= read_header(path)
    return {n: stored[n] for n in names}


@pytest.mark.parametrize("max_shard_size", ["5GB", "20KB", 1])
def test_streamed_shards_are_the_bytes_save_sharded_safetensors_writes(tmp_path, max_shard_size):
    tensors = _tensors()
    (tmp_path / "streamed").mkdir()
    write_tensors(_parts(tmp_path, tensors), tmp_path / "streamed", max_shard_size)
    save_sharded_safetensors(tensors, tmp_path / "saved", max_shard_size)
    names = sorted(os.listdir(tmp_path / "saved"))
    assert names == sorted(os.listdir(tmp_path / "streamed"))
    if max_shard_size == "5GB":
        assert names == ["model.safetensors"]
    else:
        assert len(names) > 3 and "model.safetensors.index.json" in names
    for n in names:
        assert filecmp.cmp(tmp_path / "saved" / n, tmp_path / "streamed" / n, shallow=False), n


def _rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def test_the_writer_holds_one_small_buffer_not_a_shard(tmp_path, monkeypatch):
    """A 64 MiB output shard is written with a 1 MiB buffer: Python allocations (tracemalloc) and, on Linux, the
    process's resident peak (VmHWM, reset first) rise by far less than the shard."""
    tensors = {f"layer.{i}.weight": torch.full((4096, 1024), float(i), dtype=torch.bfloat16) for i in range(8)}
    where = _parts(tmp_path, tensors)
    shard = sum(t.numel() * t.element_size() for t in tensors.values())
    del tensors
    monkeypatch.setattr(output, "CHUNK_BYTES", 2**20)
    (tmp_path / "out").mkdir()
    linux = os.path.exists("/proc/self/clear_refs")
    if linux:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _rss_kib("VmRSS")
    tracemalloc.start()
    try:
        held = write_tensors(where, tmp_path / "out", "5GB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held == 2**20 and peak < shard / 16, (held, peak, shard)
    if linux:
        assert (_rss_kib("VmHWM") - before) * 1024 < shard / 4
    assert (tmp_path / "out" / "model.safetensors").stat().st_size > shard


def test_a_truncated_part_file_is_a_checkpoint_error(tmp_path):
    from ar_core.errors import CheckpointError

    parts = _parts(tmp_path, _tensors())
    path = next(iter(parts.values())).shard
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 8)
    (tmp_path / "out").mkdir()
    with pytest.raises(CheckpointError, match="truncated"):
        write_tensors(parts, tmp_path / "out", "5GB")


# A fresh process that quantizes model-free and reports whether it ever imported transformers.
FRESH_RUN = textwrap.dedent("""
    import sys
    from ar_algos.model_free import quantize_model_free

    quantize_model_free(sys.argv[1], sys.argv[2], scheme="W4A16G32", max_shard_size="150KB")
    print("transformers" in sys.modules)
""")


@pytest.mark.slow
def test_a_fresh_process_plans_from_headers_and_writes_the_same_bytes(tmp_path):
    from ar_algos.model_free import quantize_model_free
    from ar_algos.tiny import tiny_model

    src = tmp_path / "src"
    tiny_model("llama", dtype=torch.bfloat16, hidden_size=128, intermediate_size=256).save_pretrained(
        src, max_shard_size="100KB")
    quantize_model_free(src, tmp_path / "here", scheme="W4A16G32", max_shard_size="150KB")  # plans in this process
    proc = subprocess.run([sys.executable, "-c", FRESH_RUN, str(src), str(tmp_path / "fresh")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "False"
    names = sorted(os.listdir(tmp_path / "here"))
    assert names == sorted(os.listdir(tmp_path / "fresh")) and "model.safetensors.index.json" in names
    for n in names:
        assert filecmp.cmp(tmp_path / "here" / n, tmp_path / "fresh" / n, shallow=False), n
