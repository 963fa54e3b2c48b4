"""The preflight before quantizing reads the capability table per layer (row 4 of issue 17): a group size that does
not divide a layer's in_features warns, and an explicit `ar quantize --format` no consumer can load is refused
before any quantization, with advice that works."""

from __future__ import annotations

import warnings

import pytest

from ar_algos import AutoRound
from ar_algos.consumer_check import check_consumers
from ar_cli.main import main
from ar_core.errors import ArError
from ar_core.presets import parse_scheme
from ar_export import get_writer
from ar_export.testing import save_tiny_model

W4 = parse_scheme("W4A16")
FAST = ["--iters", "0", "--nsamples", "2", "--seqlen", "8"]
WIDTHS = {"model.layers.0.self_attn.q_proj": 256, "model.layers.0.mlp.down_proj": 320}


@pytest.fixture(scope="module")
def narrow_dir(tmp_path_factory):
    """A tiny Llama whose down_proj has in_features 320, which group 128 does not divide."""
    return save_tiny_model(tmp_path_factory.mktemp("narrow") / "m", intermediate_size=320)


def test_no_consumer_left_is_refused_with_advice_and_a_partial_loss_warns():
    schemes = {n: W4 for n in WIDTHS}
    with pytest.raises(ArError, match="down_proj in_features 320 % group_size 128 = 64.*divides every layer's "
                                      r"in_features \(32, 64\)"):
        check_consumers(get_writer("auto_round"), schemes, WIDTHS, "error")
    with pytest.warns(UserWarning, match="auto-round, vllm cannot load"):
        check_consumers(get_writer("auto_round"), schemes, WIDTHS)
    with pytest.raises(ArError, match="gptqmodel: layer model.layers.0.mlp.down_proj"):
        check_consumers(get_writer("auto_gptq"), schemes, WIDTHS, "error")
    with pytest.warns(UserWarning, match="still loads in mlx-lm"):  # auto_awq 4-bit: mlx-lm has no such limit
        check_consumers(get_writer("auto_awq"), schemes, WIDTHS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_consumers(get_writer("auto_round"), {n: parse_scheme("W4A16G64") for n in WIDTHS}, WIDTHS, "error")
    with pytest.raises(ArError, match="unloadable='maybe'"):
        check_consumers(get_writer("auto_round"), schemes, WIDTHS, "maybe")


def test_api_warns_and_cli_refuses_an_explicit_format_before_quantizing(narrow_dir, tmp_path, capsys):
    with pytest.raises(ArError, match="down_proj in_features 320"):
        AutoRound(str(narrow_dir), iters=0, nsamples=2, seqlen=8).quantize_and_save(
            tmp_path / "api", format="auto_round", unloadable="error")
    assert not (tmp_path / "api").exists() and not (tmp_path / "api.work").exists()
    rc = main(["quantize", str(narrow_dir), *FAST, "--format", "auto_round", "--output_dir", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert rc == 1 and "group_size that divides" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match="cannot load this model's checkpoint"):
        assert main(["quantize", str(narrow_dir), *FAST, "--output_dir", str(tmp_path / "default")]) == 0
