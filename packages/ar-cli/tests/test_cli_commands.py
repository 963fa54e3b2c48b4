"""`ar eval`, `ar inspect`, `ar list` and the seed scripts, in-process on a tiny random model."""

from __future__ import annotations

import json

import pytest

from ar_cli.main import main
from ar_cli.seeds import auto_round, auto_round_best


def test_eval_against_itself_prints_zero_kl_and_full_agreement(capsys, tiny_model_dir, text_path, tmp_path):
    rc = main(["eval", str(tiny_model_dir), "--reference", str(tiny_model_dir), "--text", str(text_path),
               "--windows", "2", "--seqlen", "64", "--save_json", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 windows x 64 tokens, stride 64, no BOS, 126 tokens scored" in out
    assert "KL divergence mean 0.00000" in out and "top-1 agreement 100.00%" in out
    assert "32.000 bits per weight" in out
    report = json.loads((tmp_path / "reports" / "tiny-llama.json").read_text())
    assert report["top1_agreement"] == 1.0 and report["n_windows"] == 2


def test_eval_compare_table_and_plot(capsys, tmp_path):
    runs = [{"name": "a", "bits_per_weight": 4.2, "ppl": 30.0, "disk_bytes": 1}, {"name": "b", "bits_per_weight": 2.1,
                                                                                  "ppl": 90.0, "disk_bytes": 1}]
    paths = []
    for r in runs:
        paths.append(tmp_path / f"{r['name']}.json")
        paths[-1].write_text(json.dumps(r))
    rc = main(["eval", "--compare", *map(str, paths), "--plot", str(tmp_path / "q.png")])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.index("\nb ") < out.index("\na ")  # sorted by bits per weight
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_inspect_plain_checkpoint(capsys, tiny_model_dir):
    assert main(["inspect", str(tiny_model_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["quant_method"] is None
    assert info["bits_per_weight"] == pytest.approx(32.0)
    assert {r["scheme"] for r in info["layers"]} == {"16-bit"} and len(info["layers"]) == 2 * 7 + 1
    assert info["consumers"]["llama.cpp"]["ok"] is False and info["consumers"]["transformers"]["ok"] is True


def test_ar_error_exits_1_without_traceback(capsys):
    assert main(["inspect", "/nonexistent/ckpt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ar inspect: error: ") and "/nonexistent/ckpt" in err and "Traceback" not in err


def test_list_schemes_and_recipes(capsys):
    assert main(["list", "schemes"]) == 0
    out = capsys.readouterr().out
    assert "W4A16" in out and "GGUF:Q4_K_M" in out and "NVFP4" in out
    assert main(["list", "recipes"]) == 0
    out = capsys.readouterr().out
    assert "best     --iters 1000, --nsamples 512" in out


def test_seed_scripts(capsys):
    assert auto_round_best(["m", "--recipe", "light"]) == 2
    assert "auto-round-best fixes --recipe best" in capsys.readouterr().err
    assert auto_round(["list", "alg"]) == 0
    assert "signround" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        auto_round(["m", "--iters", "0", "--lr", "0.1"])
    assert exc.value.code == 2 and "auto-round quantize: error: --lr" in capsys.readouterr().err


def test_inspect_gguf_file(capsys, tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    writer.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {r["layer"]: r for r in info["layers"]}
    assert rows["blk.0.attn_q.weight"]["scheme"] == "Q8_0"
    assert rows["blk.0.attn_q.weight"]["bits_per_weight"] == pytest.approx(8.5)  # 34 bytes per 32 weights
    assert rows["output_norm.weight"]["bits_per_weight"] == pytest.approx(32.0)
    assert info["n_params"] == 8 * 64 + 64
    assert info["quantized_bits_per_weight"] == pytest.approx(8.5)  # the F32 norm left out
    assert info["bits_per_weight"] > info["quantized_bits_per_weight"]  # the whole file over every element
    assert info["consumers"]["llama.cpp"]["ok"] and not info["consumers"]["vllm"]["ok"]
