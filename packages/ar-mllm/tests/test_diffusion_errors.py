"""Bad input to the diffusion path is refused with an ArError naming field, value and what is allowed, before any
weight loads (the pipeline directories here hold no weights at all)."""

from __future__ import annotations

import json

import pytest

from ar_core.errors import ArError, DataError

pytest.importorskip("diffusers")

from ar_cli.testing import run_cli  # noqa: E402
from ar_mllm.diffusion import AutoRoundDiffusion, check_pipeline_dir, load_prompts  # noqa: E402


def _index(tmp_path, cls: str, **components) -> str:
    folder = tmp_path / cls
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls, "_diffusers_version": "0.42.1",
                                                         **components}))
    return str(folder)


def test_pipeline_without_transformer_is_refused_before_loading(tmp_path):
    path = _index(tmp_path, "StableDiffusionPipeline", unet=["diffusers", "UNet2DConditionModel"],
                  vae=["diffusers", "AutoencoderKL"])
    with pytest.raises(ArError, match=r"pipeline\.transformer=None.*DiT denoiser.*unet, vae"):
        AutoRoundDiffusion(path, recipe="rtn")


def test_unknown_pipeline_class_is_refused_before_loading(tmp_path):
    path = _index(tmp_path, "MyPipeline", transformer=["diffusers", "FluxTransformer2DModel"])
    with pytest.raises(ArError, match=r"pipeline class='MyPipeline'.*FluxPipeline, StableDiffusion3Pipeline"):
        check_pipeline_dir(path)


def test_unknown_transformer_class_is_refused(tmp_path):
    path = _index(tmp_path, "FluxPipeline", transformer=["diffusers", "PixArtTransformer2DModel"])
    with pytest.raises(ArError, match=r"transformer class='PixArtTransformer2DModel'"):
        check_pipeline_dir(path)


def test_not_a_pipeline_is_refused():
    with pytest.raises(ArError, match=r"pipeline='int'.*diffusers pipeline"):
        AutoRoundDiffusion(3, recipe="rtn")


def test_bad_knobs_are_refused_first(tmp_path):
    path = _index(tmp_path, "FluxPipeline", transformer=["diffusers", "FluxTransformer2DModel"])
    with pytest.raises(ArError, match=r"num_inference_steps=0.*positive integer"):
        AutoRoundDiffusion(path, num_inference_steps=0)
    with pytest.raises(ArError, match=r"guidance_scale='high'"):
        AutoRoundDiffusion(path, guidance_scale="high")
    with pytest.raises(ArError, match=r"nsamples=0"):
        AutoRoundDiffusion(path, nsamples=0)


def test_prompts_sources(tmp_path):
    assert len(load_prompts(None)) >= 30
    assert load_prompts(["a", "b", "c"], 2) == ["a", "b"]
    (tmp_path / "c.txt").write_text("a dog\n\na cat\n")
    assert load_prompts(str(tmp_path / "c.txt")) == ["a dog", "a cat"]
    (tmp_path / "c.tsv").write_text("id\tcaption\n1\ta red car\n2\ta boat\n")
    assert load_prompts(str(tmp_path / "c.tsv")) == ["a red car", "a boat"]
    (tmp_path / "c.json").write_text(json.dumps([{"caption": "a tree"}, "a hill"]))
    assert load_prompts(str(tmp_path / "c.json")) == ["a tree", "a hill"]
    (tmp_path / "c.csv").write_text("x")
    with pytest.raises(DataError, match=r"prompts=.*\.txt, \.tsv or \.json"):
        load_prompts(str(tmp_path / "c.csv"))
    with pytest.raises(DataError, match=r"prompts=.*at least one caption"):
        load_prompts([])


def test_coco_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"prompts='coco2014'.*HF_HUB_OFFLINE"):
        load_prompts("coco2014")


def test_cli_refuses_bad_pipeline_and_llm_only_flags(tmp_path, capsys):
    bad = _index(tmp_path, "StableDiffusionPipeline", unet=["diffusers", "UNet2DConditionModel"])
    rc, err = run_cli(capsys, ["quantize", bad, "--recipe", "rtn", "--output_dir", str(tmp_path / "o")])
    assert rc != 0 and "pipeline.transformer=None" in err
    good = _index(tmp_path, "FluxPipeline", transformer=["diffusers", "FluxTransformer2DModel"])
    rc, err = run_cli(capsys, ["quantize", good, "--seqlen", "64", "--output_dir", str(tmp_path / "o")])
    assert rc != 0 and "--seqlen does not apply to a diffusion pipeline" in err
    rc, err = run_cli(capsys, ["quantize", good, "--format", "gguf", "--output_dir", str(tmp_path / "o")])
    assert rc != 0 and "format" in err
