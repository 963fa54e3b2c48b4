"""Text sources, size and bits per weight, the flat report, and comparing runs."""

from __future__ import annotations

import pytest

from ar_core.errors import CheckpointError, DataError
from ar_eval import EvalProtocol, compare_table, evaluate, load_report, load_text, plot_quality, save_report
from ar_eval.size import count_parameters, size_report
from ar_export.testing import tiny_llama


def test_load_text_from_file(text_file):
    text, source = load_text(str(text_file))
    assert text == text_file.read_text() and source == f"file {text_file}"


def test_load_text_missing_file_names_the_value():
    with pytest.raises(DataError, match="nope/missing.txt"):
        load_text("nope/missing.txt")


@pytest.mark.parametrize("spec", ["hf:", "hf:a:b:c:d"])
def test_load_text_bad_hub_spec(spec):
    with pytest.raises(DataError, match="hf:PATH"):
        load_text(spec)


def test_load_text_embedded_wiki_test_split():
    text, source = load_text("wiki")
    assert source == "corpus wiki:test"
    assert text.startswith("Anarchism") and len(text) > 100_000


def test_size_report_float32_is_32_bits_per_weight(tiny_dir):
    n = sum(p.numel() for p in tiny_llama().parameters())
    assert count_parameters(tiny_dir) == n
    rep = size_report(tiny_dir)
    assert rep.n_params == n
    assert rep.tensor_bytes == 4 * n
    assert rep.bits_per_weight == pytest.approx(32.0)
    assert rep.disk_bytes > rep.tensor_bytes


def test_size_report_missing_dir():
    with pytest.raises(CheckpointError, match="does not exist"):
        size_report("/nonexistent/ckpt")


def test_evaluate_against_itself(tiny_dir, text_file, tmp_path):
    rep = evaluate(tiny_dir, reference=tiny_dir, text=str(text_file), protocol=EvalProtocol(seqlen=64, max_windows=3),
                   show_progress=False)
    assert rep["kl_mean"] == pytest.approx(0.0, abs=1e-7)
    assert rep["top1_agreement"] == 1.0
    assert rep["ppl"] == pytest.approx(rep["ppl_reference"])
    assert rep["n_windows"] == 3 and rep["n_scored"] == 3 * 63
    assert rep["protocol"]["seqlen"] == 64 and rep["text"].startswith("file ")
    assert rep["bits_per_weight"] == pytest.approx(32.0)
    path = save_report(rep, tmp_path / "r.json")
    assert load_report(path) == rep


def test_evaluate_without_reference_gives_ppl_only(tiny_dir, text_file):
    rep = evaluate(tiny_dir, text=str(text_file), protocol=EvalProtocol(seqlen=64, max_windows=2),
                   show_progress=False)
    assert rep["ppl"] > 1 and "kl_mean" not in rep


RUNS = [
    {"name": "w4", "bits_per_weight": 4.25, "quantized_bits_per_weight": 4.156, "disk_bytes": 3 * 2**20,
     "ppl": 25.0, "kl_mean": 0.05, "kl_p99": 0.6,
     "top1_agreement": 0.9, "ppl_reference": 23.9},
    {"name": "w2", "bits_per_weight": 2.3, "disk_bytes": 2**20, "ppl": 900.0, "kl_mean": 2.0, "kl_p99": 9.0,
     "top1_agreement": 0.4, "ppl_reference": 23.9},
    {"name": "bf16", "bits_per_weight": 16.0, "disk_bytes": 8 * 2**20, "ppl": 23.9},
]


def test_compare_table_sorted_by_bits():
    lines = compare_table(RUNS).splitlines()
    assert lines[0].split()[:3] == ["run", "bpw", "size"]
    assert [ln.split()[0] for ln in lines[2:]] == ["w2", "w4", "bf16"]
    assert "90.00" in lines[3] and lines[4].split()[-1] == "-"
    assert "q-layer bpw" in lines[0] and "4.156" in lines[3]


def test_plot_quality_writes_png(tmp_path):
    out = plot_quality(RUNS, tmp_path / "plot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="kl_mean"):
        plot_quality([{"name": "x", "ppl": 3.0}], tmp_path / "none.png", metric="kl_mean")
