"""ar_core.io on failures: unwritable or existing output paths, a full disk, stale temporaries, broken safetensors."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from ar_core.errors import CheckpointError
from ar_core.io import atomic_output_dir, check_output_dir, open_safetensors, save_sharded_safetensors


def test_check_output_dir_names_the_problem(tmp_path, monkeypatch):
    assert check_output_dir(tmp_path / "a" / "b") == (tmp_path / "a" / "b").absolute()
    (tmp_path / "exists").mkdir()
    with pytest.raises(CheckpointError, match="output_dir=.*exists.*does not exist yet.*overwrite"):
        check_output_dir(tmp_path / "exists")
    assert check_output_dir(tmp_path / "exists", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=f"{str(tmp_path / 'file')!r} is a file"):
        check_output_dir(tmp_path / "file" / "deeper" / "out")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(CheckpointError, match=f"directory {str(tmp_path)!r} is not writable"):
        check_output_dir(tmp_path / "new")


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "ran out of disk space"), (errno.EDQUOT, "disk space"),
                                          (errno.EROFS, "not writable"), (errno.EACCES, "not writable")])
def test_a_failed_write_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch, code, needle):
    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(CheckpointError, match=f"writing output_dir=.*out.*{needle}.*nothing was left"):
        with atomic_output_dir(tmp_path / "out") as tmp:
            save_sharded_safetensors({"w": torch.zeros(4)}, tmp)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_output_dir(tmp_path / "out"):
            raise FileNotFoundError(errno.ENOENT, "gone")
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_left_by_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / ".out.tmp-abc123"
    (stale / "half").mkdir(parents=True)
    other = tmp_path / ".other.tmp-abc123"
    other.mkdir()
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "done").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-abc123", "out"]


@pytest.mark.parametrize("content, needle", [(None, "is missing"), (b"\xff" * 64, "is truncated or corrupt"),
                                             ("half", "is truncated or corrupt")],
                         ids=["missing", "garbage", "truncated"])
def test_open_safetensors_names_the_file(tmp_path, content, needle):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    if content == "half":
        save_file({"w": torch.arange(1000.0)}, str(path))
        path.write_bytes(path.read_bytes()[:-10])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{str(path)!r} {needle}.*re-download or re-save"):
        open_safetensors(path)
