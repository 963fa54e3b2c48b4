"""The small ones of issue 18 row 9: CLI messages name flags, not Python keywords; per-tensor and per-channel runs
get distinct folder names; a group size that divides no layer says what happens; the effective recipe knobs are
printed; batch_size > nsamples is clamped with a message; a resume after the last block says so (not "block 3/2");
an unreachable hub falls back to the offline dataset at once; --device is accepted."""

from __future__ import annotations

import logging
import re
import socket

import pytest

from ar_algos import AutoRound
from ar_cli.main import build_parser, main
from ar_cli.quantize_cmd import output_name
from ar_cli.surface import cli_message
from ar_core.presets import parse_scheme
from ar_export.testing import save_tiny_model, tiny_tokenizer

FAST = ["--iters", "0", "--nsamples", "2", "--seqlen", "8"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("small-ones") / "tiny")


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


@pytest.mark.parametrize("text, said", [
    ("pass resume=False to start over", "pass --no-resume to start over"),
    ("model 'm' needs its own Python code to load and trust_remote_code=False (the default); pass "
     "trust_remote_code=True only if", "model 'm' needs its own Python code to load and no --trust_remote_code was "
                                       "given; pass --trust_remote_code only if"),
    ("output_dir='x' is not allowed: a path that does not exist yet (pass overwrite=True, or --overwrite, to "
     "replace it)", "output_dir='x' is not allowed: a path that does not exist yet (pass --overwrite to replace it)"),
    ("closest layer names: a, b. Fix the name, or pass strict=False to skip unmatched entries.",
     "closest layer names: a, b. Fix the name or drop the entry."),
    ("already --resume and --no-resume", "already --resume and --no-resume"),
])
def test_cli_messages_name_flags(text, said):
    assert cli_message(text) == said


def test_resume_mismatch_names_the_flag_and_no_resume_starts_over(capsys, model_dir, tmp_path):
    out = tmp_path / "out"
    AutoRound(str(model_dir), iters=0, nsamples=2, seqlen=8, verbose=False).quantize(out / "tiny-w4g128.work")
    rc, _, err = _cli(capsys, ["quantize", str(model_dir), *FAST[:2], "--nsamples", "3", "--seqlen", "8",
                               "--output_dir", str(out)])
    assert rc == 1 and "--no-resume" in err and "resume=False" not in err, err
    rc, _, err = _cli(capsys, ["quantize", str(model_dir), *FAST[:2], "--nsamples", "3", "--seqlen", "8",
                               "--output_dir", str(out), "--no-resume"])
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["tiny-w4g128"]


def test_per_tensor_and_per_channel_get_distinct_names(capsys, model_dir, tmp_path):
    assert output_name("m", parse_scheme("W4A16", group_size=-1)) == "m-w4a16"
    assert output_name("m", parse_scheme("W4A16", group_size=0)) == "m-w4a16-pertensor"
    assert output_name("m", parse_scheme("FPW8A16")) == "m-fp-w8a16-pertensor"
    for gs in ("0", "-1"):
        rc, _, err = _cli(capsys, ["quantize", str(model_dir), *FAST, "--group_size", gs,
                                   "--output_dir", str(tmp_path)])
        assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-w4a16", "tiny-w4a16-pertensor"]


@pytest.mark.parametrize("kw", [dict(iters=0), dict(iters=0, disable_opt_rtn=True)], ids=["opt_rtn", "model_free"])
def test_group_size_that_divides_nothing_says_what_happens(caplog, model_dir, tmp_path, kw):
    caplog.set_level(logging.WARNING)
    AutoRound(str(model_dir), group_size=100, nsamples=2, seqlen=8, **kw).quantize_and_save(tmp_path / "q")
    needle = (r"group_size=100 does not divide in_features of 14 of the 14 quantized layers \(e\.g\. "
              r"model\.layers\.0\.self_attn\.q_proj: in_features=256 = 2 x 100 \+ 56\): the last group of each row "
              r"holds the remaining columns \(zero-padded while quantizing\); group_size=128 divides every layer")
    assert re.search(needle, caplog.text), caplog.text


def test_recipe_knobs_are_printed_and_batch_size_is_clamped(capsys, model_dir, tmp_path):
    rc, out, err = _cli(capsys, ["quantize", str(model_dir), *FAST, "--recipe", "best",
                                 "--output_dir", str(tmp_path)])
    assert rc == 0, err
    assert ("recipe best: iters 0 (--iters), nsamples 2 (--nsamples), seqlen 8 (--seqlen), batch_size 8; "
            "--batch_size 8 > --nsamples 2: using --batch_size 2") in out, out


def test_resume_after_the_last_block_is_not_block_n_plus_1(capsys, model_dir, tmp_path):
    work = tmp_path / "work"
    AutoRound(str(model_dir), iters=0, nsamples=2, seqlen=8, verbose=False).quantize(work)
    AutoRound(str(model_dir), iters=0, nsamples=2, seqlen=8).quantize(work)
    err = capsys.readouterr().err
    assert f"all 2 blocks are done in {work}; resuming with the layers outside them" in err, err
    assert "block 3/2" not in err


def test_unreachable_hub_falls_back_at_once(monkeypatch, caplog):
    from ar_algos.data import get_calibration_data
    from ar_algos.data import sources

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    asked = []

    def no_network(address, timeout=None):
        asked.append(address)
        raise OSError("Name or service not known")

    def hub_rows(self, split):
        raise AssertionError("the hub was asked for rows")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(sources.HubDataset, "_rows", hub_rows)
    sources.hub_reachable.cache_clear()
    try:
        caplog.set_level(logging.WARNING)
        for _ in range(2):
            assert len(get_calibration_data(tiny_tokenizer(), None, nsamples=2, seqlen=8)) == 2
        assert asked == [("huggingface.co", 443)]  # asked once, then remembered
        assert "the Hugging Face hub cannot be reached: using 'wiki'" in caplog.text
    finally:
        sources.hub_reachable.cache_clear()


def test_device_is_the_reference_spelling_of_device_map():
    args = build_parser().parse_args(["quantize", "m", "--device", "cpu"])
    assert args.device_map == "cpu"
