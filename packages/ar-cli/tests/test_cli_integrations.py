"""`ar` on what the other packages offer: bits per weight in `list schemes`, ar_kernels' backend table and
explain (`list backends`, `inspect --backends`), `convert`, VLM routing to AutoRoundMLLM and `--model_free`."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from ar_cli.main import main
from ar_cli.vlm import detect_vlm, vlm_evidence
from ar_core.registry import FORMATS


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}


def _usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.fixture(autouse=True, scope="module")
def writers():
    """The auto_round and fake writers, registered directly when the entry points are not installed."""
    import ar_export

    for name in ("auto_round", "fake"):
        if not FORMATS.is_available(name):
            FORMATS.register(name, ar_export.get_writer(name))


@pytest.fixture
def gptq_dir(tmp_path):
    """A tiny Llama stored as GPTQ: 4-bit g32 everywhere, 8-bit down_proj, v_proj kept 16-bit."""
    from ar_kernels.testing import quantize_block_linears, save_quantized, tiny_llama

    model = tiny_llama(64, 128)
    layers = quantize_block_linears(model, skip=("v_proj",), bits_by_suffix={"down_proj": 8})
    path = tmp_path / "gptq"
    path.mkdir()
    save_quantized(path, model, layers, {"quantization_config": {
        "quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True,
        "dynamic": {"-:.*v_proj": {}, "+:.*down_proj": {"bits": 8}}}})
    return path


def test_list_schemes_shows_bits_per_weight_with_and_without_scales(capsys):
    assert main(["list", "schemes"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["scheme"][-3:] == ["bpw", "code", "bpw"]
    assert rows["W4A16"][-2:] == ["4.125", "4"]  # an fp16 scale per 128 weights
    assert rows["W2A16G32"][-2:] == ["2.5", "2"]
    assert rows["MXFP4"][-2:] == ["4.25", "4"]  # one E8M0 byte per 32
    assert rows["GGUF:Q4_K_M"][-2:] == ["4.5", "4"]  # 144 bytes per 256 weights
    assert "4096x4096" in out


def test_list_backends_uses_the_backend_table(capsys):
    assert main(["list", "backends"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["torch"][1] == "0" and "gptq,gptq_v2,awq,mlx,mxfp4,mxfp8,nvfp4,fp8" in rows["torch"]
    assert rows["triton"][1] == "2" and "cuda,cpu" in rows["triton"] and "(cuda)" in rows["triton"]
    assert rows["mlx"][1] == "5" and "32,64,128" in rows["mlx"]
    assert rows["cpu"][1] == "1" and "cpu (cpu)" in " ".join(rows["cpu"]) and "2,3,4,8" in rows["cpu"]
    assert "triton:" in rows and "mlx:" in rows and "cpu:" in rows  # one description line per backend


def test_inspect_shows_the_backend_per_layer_and_why_others_were_rejected(capsys, gptq_dir, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(["inspect", str(gptq_dir), "--json"]) == 0
    rows = {r["layer"]: r for r in json.loads(capsys.readouterr().out)["layers"]}
    q = rows["model.layers.0.self_attn.q_proj"]
    assert q["backend"] == "cpu" and q["reason"].startswith("cpu (priority 1) runs int 4-bit") and \
        "[int4 kernel (aten._weight_int4pack_mm_for_cpu" in q["reason"] and "rejected" not in q
    assert "backend" not in rows["model.layers.0.self_attn.v_proj"]  # 16-bit: no kernel to choose
    assert main(["inspect", str(gptq_dir), "--json", "--backends"]) == 0
    rows = {r["layer"]: r for r in json.loads(capsys.readouterr().out)["layers"]}
    assert rows["model.layers.0.mlp.down_proj"]["rejected"] == {
        "mlx": "packing 'gptq' not in ['mlx']", "torch": "capable, lower priority (0 < 1)",
        "triton": "device 'cpu' needs TRITON_INTERPRET=1 (triton kernels run on CUDA)"}
    assert main(["inspect", str(gptq_dir), "--backends"]) == 0
    out = capsys.readouterr().out
    assert "  cpu           10 x int 4-bit g32 sym: cpu (priority 1)" in out
    assert "  cpu           2 x int 8-bit g32 sym" in out and "[vectorised unpack + matmul: bits=8" in out and "      not mlx: packing 'gptq' not in ['mlx']" in out


def test_inspect_forced_backend_that_cannot_run(capsys, gptq_dir, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(["inspect", str(gptq_dir), "--backend", "triton", "--backends"]) == 0
    out = capsys.readouterr().out
    assert "NONE          10 x int 4-bit g32 sym: no backend can run layer" in out
    assert "      not torch: backend='triton' was asked for" in out
    assert "--backend 'cuda' is not a backend" in _usage_error(capsys, ["inspect", str(gptq_dir), "--backend", "cuda"])


def test_convert_gptq_to_auto_round_keeps_codes(capsys, gptq_dir, tmp_path):
    dst = tmp_path / "ar"
    assert main(["convert", str(gptq_dir), str(dst)]) == 0
    assert f"-> {dst} (auto_round)" in capsys.readouterr().out
    cfg = json.loads((dst / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "auto-round" and cfg["packing_format"] == "auto_round:auto_gptq"
    src_t, dst_t = load_file(gptq_dir / "model.safetensors"), load_file(dst / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.qweight"
    assert dst_t[name].equal(src_t[name])  # same GPTQ packing: identical codes
    assert main(["inspect", str(dst), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scheme_counts"] == {"int 4-bit g32 sym": 10, "16-bit": 3, "int 8-bit g32 sym": 2}
    assert main(["convert", str(gptq_dir), str(dst)]) == 1  # exists: needs --overwrite
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert main(["convert", str(gptq_dir), str(dst), "--overwrite"]) == 0
    assert "'gptqq'" in _usage_error(capsys, ["convert", str(gptq_dir), str(dst), "--format", "gptqq"])


def test_vlm_configs_are_recognised():
    assert vlm_evidence({"model_type": "llava", "vision_config": {}, "text_config": {}}) == \
        "its config has a vision_config"
    assert vlm_evidence({"architectures": ["FooForConditionalGeneration"], "image_token_id": 5}) == \
        "architecture FooForConditionalGeneration with image_token_id"
    assert vlm_evidence({"text_config": {}, "image_token_index": 3}) == \
        "its config has a text_config and image_token_index"
    assert vlm_evidence({"architectures": ["T5ForConditionalGeneration"], "d_model": 8}) is None
    assert vlm_evidence({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}) is None


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    """A saved tiny random LLaVA with its processor, and its state dict."""
    from ar_mllm.tiny import tiny_llava_processor, tiny_tokenizer, tiny_vlm

    path = tmp_path_factory.mktemp("vlm") / "tiny-llava"
    model = tiny_vlm("llava")
    model.save_pretrained(path)
    tiny_llava_processor(tiny_tokenizer()).save_pretrained(path)
    return path, model.state_dict()


@pytest.mark.parametrize("flags", [[], ["--mllm"]])
def test_vlm_goes_to_autoround_mllm(capsys, vlm_dir, tmp_path, flags):
    vlm_dir, src = vlm_dir
    assert detect_vlm(str(vlm_dir)) == "its config has a vision_config"
    rc = main(["quantize", str(vlm_dir), *flags, "--recipe", "rtn", "--scheme", "W4A16G32", "--format", "fake",
               "--ignore_layers", "layers.1.mlp", "--output_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert ("looks like a vision-language model" in out) == (not flags)
    saved = tmp_path / "tiny-llava-w4g32"
    assert json.loads((saved / "ar_mllm_template.json").read_text())["model_type"] == "llava"
    tensors = load_file(saved / "model.safetensors")
    vision = "model.vision_tower.encoder.layers.0.mlp.fc1.weight"
    assert tensors[vision].equal(src[vision])  # vision tower untouched
    lang = "model.language_model.layers.{}.mlp.up_proj.weight"
    assert not tensors[lang.format(0)].equal(src[lang.format(0)])  # quantized (fake: QDQ weights)
    assert tensors[lang.format(1)].equal(src[lang.format(1)])  # --ignore_layers reached AutoRound


def test_inspect_lists_the_layers_of_a_vlm_checkpoint(capsys, vlm_dir):
    assert main(["inspect", str(vlm_dir[0])]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "language_model" in captured.out


def test_model_free_matches_the_regular_rtn_path(capsys, tiny_model_dir, tmp_path):
    common = ["--scheme", "W4A16G32", "--ignore_layers", "layers.1.mlp", "--output_dir"]
    assert main(["quantize", str(tiny_model_dir), "--model_free", *common, str(tmp_path / "free")]) == 0
    assert "model-free RTN: 11 layers" in capsys.readouterr().out
    assert main(["quantize", str(tiny_model_dir), "--algorithm", "rtn", "--disable_model_free", *common,
                 str(tmp_path / "reg")]) == 0
    assert "block 2/2" in capsys.readouterr().err  # the regular path: the model was loaded and run block by block
    free = load_file(tmp_path / "free" / "tiny-llama-w4g32" / "model.safetensors")
    regular = load_file(tmp_path / "reg" / "tiny-llama-w4g32" / "model.safetensors")
    assert free.keys() == regular.keys() and "model.layers.0.mlp.up_proj.qweight" in free
    assert "model.layers.1.mlp.up_proj.weight" in free
    assert all(free[k].equal(regular[k]) for k in free)


@pytest.mark.parametrize("extra, needle", [
    (["--iters", "5"], "contradicts --iters 5"),
    (["--nsamples", "8"], "--nsamples has no effect with --model_free"),
    (["--format", "auto_round,fake"], "one format"),
    (["--recipe", "best"], "contradicts --recipe best"),
    (["--algorithm", "signround"], "contradicts --algorithm signround"),
    (["--mllm"], "--mllm"),
    (["--disable_model_free"], "contradicts --disable_model_free"),
])
def test_model_free_refuses_flags_it_cannot_honour(capsys, extra, needle):
    assert needle in _usage_error(capsys, ["quantize", "m", "--model_free", *extra])


def test_avg_bits_searches_a_mixed_layer_config_under_the_budget(capsys, tiny_model_dir, tmp_path):
    from ar_core.bits import average_bits
    from ar_core.scheme import QuantScheme
    from ar_kernels import explain

    search = ["--avg_bits", "4.5", "--options", "W2A16G32,W4A16G32,W8A16G32", "--dataset", "pydoc"]
    rc = main(["quantize", str(tiny_model_dir), *search, "--algorithm", "rtn", "--output_dir", str(tmp_path / "a")])
    out = capsys.readouterr().out
    assert rc == 0 and "AutoScheme: " in out
    saved = tmp_path / "a" / "tiny-llama-avg4.5b"
    rows = [r for r in explain(saved) if r["quantized"]]
    assert len(rows) == 2 * 7 and len({r["bits"] for r in rows}) > 1  # mixed widths, every block linear
    layers = [(QuantScheme(bits=r["bits"], group_size=r["group_size"], sym=r["sym"]),
               (r["out_features"], r["in_features"])) for r in rows]
    assert 4.0 < average_bits(layers) <= 4.5
    # model-free after the same (seeded) search writes the same bytes as the regular RTN path
    assert main(["quantize", str(tiny_model_dir), *search, "--model_free", "--output_dir", str(tmp_path / "b")]) == 0
    regular = load_file(saved / "model.safetensors")
    free = load_file(tmp_path / "b" / "tiny-llama-avg4.5b" / "model.safetensors")
    assert free.keys() == regular.keys() and all(free[k].equal(regular[k]) for k in free)


def test_shared_layers_tie_fused_groups(tiny_model_dir, tmp_path):
    from ar_kernels import explain

    assert main(["quantize", str(tiny_model_dir), "--avg_bits", "4.5", "--options", "W2A16G32,W4A16G32,W8A16G32",
                 "--shared_layers", "[[q_proj,k_proj,v_proj],[gate_proj,up_proj]]", "--dataset", "pydoc",
                 "--algorithm", "rtn", "--output_dir", str(tmp_path)]) == 0
    bits = {r["layer"]: r["bits"] for r in explain(tmp_path / "tiny-llama-avg4.5b") if r["quantized"]}
    for block in ("model.layers.0", "model.layers.1"):  # without the groups, v_proj gets 8 bits beside 4-bit q/k
        assert len({bits[f"{block}.self_attn.{m}_proj"] for m in "qkv"}) == 1
        assert bits[f"{block}.mlp.gate_proj"] == bits[f"{block}.mlp.up_proj"]


@pytest.mark.parametrize("extra, needle", [
    (["--avg_bits", "3"], "needs --options"),
    (["--shared_layers", "[[q_proj]]"], "--shared_layers only applies with --avg_bits"),
    (["--avg_bits", "3", "--options", "W2A16,W4A16", "--shared_layers", "{a:1}"], "shared_layers={'a': 1}"),
    (["--avg_bits", "3", "--options", "W2A16,W4A16", "--scheme", "W4A16"], "--scheme contradicts --avg_bits"),
    (["--avg_bits", "3", "--options", "W2A16,W4A16", "--bits", "3"], "--bits contradicts --avg_bits"),
    (["--avg_bits", "3", "--options", "W2A16,W4A16_MIXED"], "--avg_bits/--options:"),
    (["--avg_bits", "0", "--options", "W2A16,W4A16"], "avg_bits=0"),
    (["--avg_bits", "3", "--options", "W2A16,W4A16", "--mllm"], "not available yet"),
    (["--ignore_scale_zp_bits"], "only applies with --avg_bits"),
    (["--model_free", "--avg_bits", "3", "--options", "W4A16,W3A16"], "--options W3A16: --model_free writes int"),
    (["--model_free", "--dataset", "pydoc"], "--dataset has no effect with --model_free unless --avg_bits"),
])
def test_avg_bits_flag_errors(capsys, extra, needle):
    assert needle in _usage_error(capsys, ["quantize", "m", *extra])
