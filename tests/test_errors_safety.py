"""Nothing lost, nothing run unasked (issue 18, rows 1, 3, 4, 5, 6, 8): ar deletes only what it made, resume sees
any changed weight, one run per work directory, a full disk gives a clear error and no partial file, saved models
follow the umask, a foreign pickle is refused with an ArError. Through the CLI (`ar_cli.main`, exit code and
message) and the API."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ar_algos import AutoRound
from ar_algos.checkpoint import WorkDir
from ar_algos.tiny import random_samples, tiny_model
from ar_algos.worklock import WorkLock
from ar_cli.testing import run_cli as _cli
from ar_core.errors import CheckpointError
from ar_core.io import atomic_output_dir, save_sharded_safetensors
from ar_export.testing import save_tiny_model

TUNE = ["--iters", "1", "--nsamples", "2", "--seqlen", "8", "--batch_size", "2"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny random Llama (2 layers) with its tokenizer."""
    return save_tiny_model(tmp_path_factory.mktemp("safety") / "tiny")




def _user_files(folder: Path) -> dict[str, str]:
    """Place a user's notes.txt and data/x.csv in `folder` (made if needed); returns what must survive."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "data" / "x.csv").write_text("1,2")
    return {str(folder / "notes.txt"): "mine", str(folder / "data" / "x.csv"): "1,2"}


def _survived(files: dict[str, str]) -> None:
    for path, text in files.items():
        assert Path(path).read_text() == text, path


# --- row 1: ar removes only what it made ---------------------------------------------------------------------------

def _workdir_run(work: Path, resume: bool, fail: bool, finish: bool) -> None:
    """One work-directory life: start (resume or not), checkpoint a block, then fail or finish (remove)."""
    fp = {"model": "m", "plan": "p"}
    try:
        w = WorkDir(work, fp, resume=resume)
    except CheckpointError:
        return
    w.save_block(0, {}, {"q": torch.zeros(2)})
    w.release()
    if fail:
        return
    if finish:
        WorkDir(work, fp, resume=True).remove()


def _output_run(out: Path, overwrite: bool, fail: bool) -> None:
    try:
        with atomic_output_dir(out, overwrite=overwrite) as tmp:
            save_sharded_safetensors({"w": torch.zeros(4)}, tmp)
            (tmp / "config.json").write_text("{}")
            if fail:
                raise RuntimeError("failed while saving")
    except (CheckpointError, RuntimeError):
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["work", "out"]), st.booleans(), st.booleans(), st.booleans()),
                      min_size=1, max_size=6),
       where=st.sets(st.sampled_from(["parent", "work", "out"]), min_size=1))
def test_property_no_path_ar_did_not_create_is_ever_removed(tmp_path_factory, steps, where):
    """Whatever sequence of runs (resume=False or not, overwrite or not, failing, finishing) goes through a work
    directory and an output directory, a user's files placed in them or their parent beforehand all survive."""
    parent = tmp_path_factory.mktemp("prop")
    work, out = parent / "m.work", parent / "m"
    files = {}
    for name in where:
        files.update(_user_files({"parent": parent, "work": work, "out": out}[name]))
    for kind, flag, fail, finish in steps:
        if kind == "work":
            _workdir_run(work, resume=flag, fail=fail, finish=finish)
        else:
            _output_run(out, overwrite=flag, fail=fail)
        _survived(files)


@pytest.mark.parametrize("path", ["resume_false", "overwrite", "failure", "success"])
def test_user_files_survive_every_path_through_the_api(model_dir, tmp_path, monkeypatch, path):
    """End to end: user files in the output's parent, a foreign work_dir (refused, never emptied, even with
    resume=False) and a replaced output_dir (overwrite) survive; so do they through a failing and a successful run."""
    out, work = tmp_path / "q", tmp_path / "q.work"
    files = _user_files(tmp_path)
    args = dict(iters=1, nsamples=2, seqlen=8, batch_size=2, verbose=False)
    if path == "resume_false":
        files.update(_user_files(work))
        with pytest.raises(CheckpointError, match="not a work directory of ar"):
            AutoRound(str(model_dir), work_dir=work, resume=False, **args).quantize_and_save(out)
    elif path == "overwrite":
        AutoRound(str(model_dir), **args).quantize_and_save(out)
        files.update(_user_files(out))
        AutoRound(str(model_dir), **args).quantize_and_save(out, overwrite=True)
        assert (out / "model.safetensors").is_file()
    elif path == "failure":
        import ar_algos.driver

        def broken(*a):
            raise RuntimeError("tuning failed")

        monkeypatch.setattr(ar_algos.driver, "_quantize_block", broken)
        with pytest.raises(RuntimeError, match="tuning failed"):
            AutoRound(str(model_dir), **args).quantize_and_save(out)
        assert sorted(p.name for p in work.iterdir()) == ["lock", "run.json"]  # kept for the resume
    else:
        AutoRound(str(model_dir), **args).quantize_and_save(out)
        assert not work.exists()
    _survived(files)


def test_resume_false_deletes_only_ar_files_of_its_own_work_dir(tmp_path):
    """resume=False on ar's work directory deletes ar's files only; a user's file put there stays."""
    work = tmp_path / "w"
    w = WorkDir(work, {"a": "1"})
    w.save_block(0, {}, {})
    w.release()
    (work / "notes.txt").write_text("mine")
    w = WorkDir(work, {"a": "2"}, resume=False)
    assert sorted(p.name for p in work.iterdir()) == ["lock", "notes.txt", "run.json"]
    w.remove()
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]
    (work / "run.json").write_text(json.dumps({"fingerprint": {}, "done": 0}))  # not ar's marker
    with pytest.raises(CheckpointError, match="run.json that ar did not write"):
        WorkDir(work, {"a": "2"}, resume=False)
    assert (work / "notes.txt").read_text() == "mine"


# --- row 3: resume sees a weight changed anywhere ------------------------------------------------------------------

def test_one_weight_changed_mid_tensor_refuses_resume(tmp_path):
    samples = random_samples(2, 8)
    args = dict(scheme="W4G32", dataset=samples, nsamples=2, seqlen=8, batch_size=2, iters=1, verbose=False,
                work_dir=tmp_path / "w")
    AutoRound(tiny_model("llama", num_hidden_layers=2), **args).quantize()
    model = tiny_model("llama", num_hidden_layers=2)
    w = model.model.layers[1].mlp.down_proj.weight
    with torch.no_grad():
        w.view(-1)[w.numel() // 2 + 7] += 1e-3
    with pytest.raises(CheckpointError, match="different model"):
        AutoRound(model, **args).quantize()
    state = json.loads((tmp_path / "w" / "run.json").read_text())
    assert state["fingerprint"]["model_hash"] == "full"


def test_sampled_fingerprint_covers_every_tensor(monkeypatch):
    from ar_algos import fingerprint

    monkeypatch.setattr(fingerprint, "FULL_HASH_BYTES", 0)
    model = tiny_model("llama", num_hidden_layers=1)
    method, before = fingerprint.model_digest(model)
    w = model.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        w.view(-1)[-1] += 1.0  # the last value is always sampled; the middle ones at a stride
    assert method == "sampled" and fingerprint.model_digest(model)[1] != before


# --- row 4: one run per work directory -----------------------------------------------------------------------------

def test_a_second_run_into_the_same_output_is_refused_and_a_stale_lock_taken_over(capsys, model_dir, tmp_path):
    work = tmp_path / "out" / "tiny-w4g128.work"
    held = WorkLock.acquire(work)  # another run (a flock is per open file, so this process counts as another)
    rc, err = _cli(capsys, ["quantize", str(model_dir), *TUNE, "--output_dir", str(tmp_path / "out")])
    assert rc == 1 and re.search(rf"work_dir='{re.escape(str(work))}' is in use by another ar run \(pid "
                                 rf"{os.getpid()} on host .*, started .*\); wait for it", err), err
    with pytest.raises(CheckpointError, match="is in use by another ar run"):
        AutoRound(str(model_dir), iters=1, nsamples=2, seqlen=8, batch_size=2, verbose=False).quantize_and_save(
            tmp_path / "out" / "tiny-w4g128")
    assert not (tmp_path / "out" / "tiny-w4g128").exists()
    held.release()
    (work / "lock").write_text(json.dumps({"pid": 999999, "host": "h", "started": "then"}))  # stale, unlocked
    rc, err = _cli(capsys, ["quantize", str(model_dir), *TUNE, "--output_dir", str(tmp_path / "out")])
    assert rc == 0, err
    assert list(work.iterdir()) == []  # ar's files went; the folder stays: this run did not make it


# --- row 5: disk full ----------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB tmpfs (needs root and mount); skipped where it cannot be mounted (the injected tests cover it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs",
                                                        str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("fmt", ["auto_round", "gguf:q4_k_m"])
def test_disk_full_is_refused_up_front(capsys, model_dir, small_disk, fmt):
    rc, err = _cli(capsys, ["quantize", str(model_dir), *TUNE, "--format", fmt, "--output_dir", str(small_disk)])
    assert rc == 1 and re.search(r"not enough disk space for .* in '.*small.*': about \d+ bytes are needed, \d+ "
                                 r"bytes are free", err), err
    assert list(small_disk.iterdir()) == []


@pytest.mark.parametrize("fmt", ["auto_round", "gguf:q4_k_m"])
def test_disk_filling_up_while_writing_leaves_no_partial_file(capsys, model_dir, small_disk, monkeypatch, fmt):
    import ar_algos.space_check

    monkeypatch.setattr(ar_algos.space_check, "check_free_space", lambda *a: None)  # the estimate said it fits
    rc, err = _cli(capsys, ["quantize", str(model_dir), *TUNE, "--format", fmt, "--output_dir", str(small_disk)])
    assert rc == 1 and "ran out of disk space" in err and "small" in err, err
    left = [p.name for p in small_disk.rglob("*") if p.is_file()]
    assert not [n for n in left if n.endswith(".tmp") or ".tmp-" in n], left
    assert not any(p.name.endswith(".gguf") or p.name == "model.safetensors" for p in small_disk.rglob("*"))


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["checkpoint", "gguf"])
def test_injected_enospc_gives_a_clear_error_and_no_partial_file(capsys, model_dir, tmp_path, monkeypatch, where):
    if where == "checkpoint":
        import ar_algos.checkpoint

        real = ar_algos.checkpoint.torch.save

        def full(obj, f, *a, **kw):  # a few bytes, then the disk is full (torch wraps it in a RuntimeError)
            f.write(b"x" * 16)
            real(obj, f, *a, **kw)
            _enospc()

        monkeypatch.setattr(ar_algos.checkpoint.torch, "save", full)
        fmt, needle = "auto_round", r"writing into '.*tiny-w4g128.work' ran out of disk space: about \d+ bytes are " \
                                     r"needed and .* are free there; partial files were removed"
    else:
        import ar_export.gguf.writer as gw

        def full_gguf(model, tokenizer, path, *a):
            Path(path).write_bytes(b"GGUF")
            _enospc()

        monkeypatch.setattr(gw, "_write", full_gguf)
        fmt, needle = "gguf:q4_k_m", r"writing output_dir='.*' ran out of disk space \(.*bytes free there\); " \
                                     r"nothing was left"
    rc, err = _cli(capsys, ["quantize", str(model_dir), *TUNE, "--format", fmt, "--output_dir", str(tmp_path / "o")])
    assert rc == 1 and re.search(needle, err), err
    left = [str(p.relative_to(tmp_path)) for p in (tmp_path / "o").rglob("*")]
    assert not [n for n in left if n.endswith(".tmp") or ".tmp-" in n or n.endswith(".gguf")], left


def test_plain_rtn_writes_no_block_checkpoints(tmp_path):
    ar = AutoRound(tiny_model("llama", num_hidden_layers=2), iters=0, disable_opt_rtn=True, verbose=False,
                   work_dir=tmp_path / "w")
    ar.quantize()
    assert not (tmp_path / "w").exists()


# --- row 6: the umask ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_saved_folders_and_files_follow_the_umask(tmp_path, mask, dir_mode, file_mode):
    old = os.umask(mask)
    try:
        with atomic_output_dir(tmp_path / "m") as tmp:
            save_sharded_safetensors({"w": torch.zeros(4)}, tmp / "sub")
            (tmp / "config.json").write_text("{}")
    finally:
        os.umask(old)
    out = tmp_path / "m"
    for p in [out, out / "sub"]:
        assert p.stat().st_mode & 0o777 == dir_mode, p
    for p in [out / "config.json", out / "sub" / "model.safetensors"]:
        assert p.stat().st_mode & 0o777 == file_mode, p


# --- row 8: a foreign pickle ---------------------------------------------------------------------------------------

class _Payload:
    def __reduce__(self):
        return (os.system, ("touch RAN",))


@pytest.mark.parametrize("what", ["malicious", "corrupt"])
def test_foreign_or_corrupt_pickle_in_the_work_dir(capsys, model_dir, tmp_path, monkeypatch, what):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = ["quantize", str(model_dir), *TUNE, "--output_dir", str(out)]
    import ar_algos.driver

    real = ar_algos.driver._quantize_block

    def die_at_1(block, index, *a):
        if index == 1:
            raise KeyboardInterrupt
        return real(block, index, *a)

    monkeypatch.setattr(ar_algos.driver, "_quantize_block", die_at_1)
    assert _cli(capsys, argv)[0] == 130
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    block = out / "tiny-w4g128.work" / "block_0000.pt"
    block.write_bytes(pickle.dumps(_Payload()) if what == "malicious" else b"\x80\x04garbage")
    rc, err = _cli(capsys, argv)
    assert rc == 1 and re.search(r"work_dir file '.*block_0000.pt' is corrupt or holds objects ar does not write "
                                 r"\(.*; it was not unpickled\); delete the folder .* or pass (--no-resume|resume=False)", err), err
    assert "weights_only=False" not in err and not (tmp_path / "RAN").exists()


def test_foreign_pickle_in_the_model_folder(capsys, model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    (bad / "model.safetensors").unlink()
    (bad / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))
    rc, err = _cli(capsys, ["quantize", str(bad), *TUNE, "--output_dir", str(tmp_path / "out")])
    assert rc == 1 and re.search(r"model '.*bad' holds a pickled weight file that is corrupt or carries objects other "
                                 r"than tensors; it was not unpickled .*Use a copy with .safetensors weights", err), err
    assert "weights_only=False" not in err and not (tmp_path / "RAN").exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_quantize_then_save_removes_the_work_dir(model_dir, tmp_path):
    """quantize() releases the lock when it returns; quantize_and_save afterwards still cleans the work dir up."""
    ar = AutoRound(str(model_dir), iters=1, nsamples=2, seqlen=8, batch_size=2, verbose=False,
                   work_dir=tmp_path / "w")
    ar.quantize()
    assert sorted(p.name for p in (tmp_path / "w").iterdir())[:2] == ["block_0000.pt", "block_0001.pt"]
    ar.quantize_and_save(tmp_path / "q")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]
