"""A GGUF k-quant next to formats that cannot hold its scheme is refused before the model loads, and the two runs
the advice names both succeed when followed."""

from __future__ import annotations

import re

import pytest

from ar_cli.main import main


@pytest.fixture(autouse=True, scope="module")
def writers():
    """Every writer, registered directly when the entry points are not installed."""
    import ar_export

    ar_export.register_all()


def test_mixed_gguf_request_is_refused_up_front_with_advice_that_works(capsys, monkeypatch, tiny_model_dir,
                                                                      tmp_path):
    import ar_algos

    def no_load(*_a, **_k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(ar_algos, "AutoRound", no_load)
    scheme = ["--scheme", "W4A16", "--group_size", "32"]
    with pytest.raises(SystemExit) as exc:
        main(["quantize", str(tiny_model_dir), "--recipe", "rtn", *scheme, "--format",
              "auto_round,auto_gptq,gguf:q4_k_m", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "mixes the GGUF k-quant gguf:q4_k_m with auto_round, auto_gptq" in err
    advice = re.search(r"--format (\S+) \(with your ([^)]*)\), then --format (\S+) without scheme flags", err)
    assert advice and advice.group(2) == "--scheme --group_size"
    monkeypatch.undo()
    base = ["quantize", str(tiny_model_dir), "--recipe", "rtn", "--output_dir", str(tmp_path)]
    assert main([*base, *scheme, "--format", advice.group(1)]) == 0
    assert main([*base, "--format", advice.group(3)]) == 0
    assert sorted(p.name for p in (tmp_path / "tiny-llama-w4g32").iterdir()) == ["auto_gptq", "auto_round"]
    assert list(tmp_path.glob("*/*.gguf")), sorted(tmp_path.rglob("*"))


def test_formats_that_hold_the_gguf_scheme_may_join_it(tiny_model_dir, tmp_path):
    assert main(["quantize", str(tiny_model_dir), "--recipe", "rtn", "--format", "gguf:q4_k_m,fake",
                 "--output_dir", str(tmp_path)]) == 0
