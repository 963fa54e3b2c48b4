"""`auto_round:mlx` is spelled as the reference writes it (`auto_round_mlx` accepted too), lists and errors show
that spelling, and a multi-format run writes its folder without a colon."""

from __future__ import annotations

import json

import pytest

from ar_cli.list_cmd import list_formats, list_registry
from ar_cli.main import main
from ar_core.errors import PluginError
from ar_core.registry import FORMATS


@pytest.fixture(autouse=True, scope="module")
def writers():
    """Every writer, registered directly when the entry points are not installed."""
    import ar_export

    ar_export.register_all()


def _rows(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:] if line.strip() and not line.startswith("-")]


def test_the_registry_accepts_both_spellings_and_shows_the_reference_one():
    assert FORMATS.get("auto_round:mlx") is FORMATS.get("AUTO_ROUND_MLX")
    assert FORMATS.get("auto_round:mlx").name == "auto_round:mlx"
    assert FORMATS.knows("auto_round_mlx") and FORMATS.knows("auto_round:mlx") and not FORMATS.knows("auto_round:x")
    assert "auto_round:mlx" in FORMATS.names() and "auto_round_mlx" not in FORMATS.known_names()
    for table in (list_formats(), list_registry("formats")):
        assert "auto_round:mlx" in _rows(table) and "auto_round_mlx" not in _rows(table)
    with pytest.raises(PluginError, match=r"unknown format 'nope'; available: .*auto_round:mlx"):
        FORMATS.get("nope")


@pytest.mark.parametrize("spelling", ["auto_round:mlx", "auto_round_mlx"])
def test_quantize_takes_either_spelling_and_writes_a_folder_without_colon(tiny_model_dir, tmp_path, spelling):
    assert main(["quantize", str(tiny_model_dir), "--scheme", "W4A16G32", "--recipe", "rtn", "--format",
                 f"auto_round,{spelling}", "--output_dir", str(tmp_path)]) == 0
    run = tmp_path / "tiny-llama-w4g32"
    assert sorted(p.name for p in run.iterdir()) == ["auto_round", "auto_round_mlx"]
    qc = json.loads((run / "auto_round_mlx" / "config.json").read_text())["quantization_config"]
    assert qc["packing_format"] == "mlx"


def test_the_same_format_under_two_spellings_is_refused(capsys, tiny_model_dir, tmp_path):
    assert main(["quantize", str(tiny_model_dir), "--recipe", "rtn", "--format", "auto_round:mlx,auto_round_mlx",
                 "--output_dir", str(tmp_path)]) == 1
    assert "each format once" in capsys.readouterr().err
