"""ar_core.io: atomic output directories and the sharded safetensors writer."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ar_core.errors import CheckpointError
from ar_core.io import atomic_output_dir, parse_size, plan_shards, save_sharded_safetensors


def test_atomic_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "model"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_crash_leaves_nothing(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "half.bin").write_bytes(b"12")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_unless_overwrite(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(CheckpointError, match="overwrite=True"):
        with atomic_output_dir(out):
            pass
    assert (out / "old.txt").exists()
    (out / "model.safetensors").write_bytes(b"stale weights")
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    # the files ar writes are replaced (stale weights too); a user's other files are kept
    assert sorted(p.name for p in out.iterdir()) == ["new.txt", "old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_crash_during_overwrite_keeps_old_dir(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(ValueError):
        with atomic_output_dir(out, overwrite=True):
            raise ValueError
    assert (out / "old.txt").read_text() == "old"


def test_parse_size():
    assert parse_size("2KB") == 2000 and parse_size("1MiB") == 2**20 and parse_size(7) == 7
    with pytest.raises(CheckpointError, match="max_shard_size"):
        parse_size("lots")


def test_sharded_writer_round_trip(tmp_path):
    tensors = {f"t{i}": torch.full((100,), float(i)) for i in range(5)}  # 400 bytes each
    assert plan_shards(tensors, 900) == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    files = save_sharded_safetensors(tensors, tmp_path, max_shard_size=900)
    assert [f.name for f in files] == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors", "model.safetensors.index.json"]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 2000
    assert index["weight_map"]["t3"] == "model-00002-of-00003.safetensors"
    loaded = {}
    for f in files[:-1]:
        loaded.update(load_file(f))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_single_file_when_small(tmp_path):
    files = save_sharded_safetensors({"a": torch.ones(3)}, tmp_path)
    assert [f.name for f in files] == ["model.safetensors"]
    assert not (tmp_path / "model.safetensors.index.json").exists()
