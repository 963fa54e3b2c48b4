"""Tiny random FLUX and SD3 pipelines: quantize -> save (auto_round, fake) -> load through ar_kernels -> generate,
compared with the 16-bit pipeline on fixed prompts and seeds; SignRound beats RTN at W4; resume after a kill."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from ar_algos.checkpoint import WorkDir  # noqa: E402
from ar_mllm.diffusion import AutoRoundDiffusion, load_pipeline  # noqa: E402
from ar_mllm.diffusion.eval import compare_pipelines  # noqa: E402
from ar_mllm.diffusion.tiny import tiny_pipeline  # noqa: E402

GEN = dict(num_inference_steps=2, height=16, width=16, max_sequence_length=16, guidance_scale=3.5)
CALIB = ["a dog on grass", "a red car"]
HELD_OUT = ["a cat on a mat", "a house by a lake"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these width-64 models only pay for thread synchronisation with more (a SignRound run took
    51 s with 2 threads and 2.8 s with 1 on the loaded 2-core machine), and the results do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_w8_rtn_save_load_generate_close_to_16bit(family, tmp_path):
    reference = tiny_pipeline(family)
    pipe = tiny_pipeline(family)
    ar = AutoRoundDiffusion(pipe, scheme="W8A16", group_size=32, recipe="rtn", verbose=False, **GEN)
    _, path = ar.quantize_and_save(tmp_path / "q", format="auto_round")
    assert (path / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert {p.name for p in path.iterdir()} >= {"model_index.json", "vae", "text_encoder", "tokenizer", "scheduler"}
    loaded = load_pipeline(path)
    block = loaded.transformer.transformer_blocks[0]
    assert type(block.attn.to_q).__name__ == "CPUIntLinear"  # ar_kernels' cpu backend
    assert type(loaded.transformer.proj_out).__name__ == "Linear"  # outside the blocks: 16-bit
    result = compare_pipelines(loaded, reference, HELD_OUT[:1], **GEN)
    assert result["image_psnr"] > 35 and result["latent_psnr"] > 30 and result["image_ssim"] > 0.99
    assert result["clip_score"] is None and "no CLIP model" in result["clip_note"]
    same = compare_pipelines(loaded, pipe, HELD_OUT[:1], **GEN)  # the loaded checkpoint = the in-memory QDQ model
    assert same["latent_psnr"] > 80


def test_fake_format_is_a_plain_diffusers_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    pipe = tiny_pipeline("flux")
    ar = AutoRoundDiffusion(pipe, scheme="W4A16", group_size=32, recipe="rtn", verbose=False, **GEN)
    _, path = ar.quantize_and_save(tmp_path / "fake", format="fake")
    plain = DiffusionPipeline.from_pretrained(str(path))
    w = plain.transformer.transformer_blocks[0].attn.to_q.weight
    assert torch.equal(w, pipe.transformer.transformer_blocks[0].attn.to_q.weight)
    assert compare_pipelines(plain, pipe, HELD_OUT[:1], **GEN)["latent_psnr"] > 80


@pytest.mark.slow
@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_w4_signround_beats_rtn_on_psnr(family):
    reference = tiny_pipeline(family)
    psnr = {}
    for name, knobs in (("rtn", dict(recipe="rtn")),
                        ("signround", dict(iters=10, batch_size=4, start_from_opt_rtn=False))):
        pipe = tiny_pipeline(family)
        AutoRoundDiffusion(pipe, scheme="W4A16", group_size=32, prompts=CALIB, verbose=False, **knobs,
                           **GEN).quantize()
        psnr[name] = compare_pipelines(pipe, reference, HELD_OUT, **GEN)
    assert psnr["signround"]["latent_psnr"] > psnr["rtn"]["latent_psnr"] + 1.0, psnr
    assert psnr["signround"]["image_psnr"] > psnr["rtn"]["image_psnr"], psnr


@pytest.mark.slow  # three calibrated runs
def test_resume_after_a_kill(tmp_path, monkeypatch, capsys):
    out = tmp_path / "q"
    knobs = dict(scheme="W4A16", group_size=32, prompts=CALIB[:1], iters=2, batch_size=2, start_from_opt_rtn=False,
                 **GEN)  # plain-RTN start: the opt-RTN scale search is the slow part on CPU
    save_block = WorkDir.save_block

    def killed_after_two(self, i, *args, **kwargs):
        save_block(self, i, *args, **kwargs)
        if i == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(WorkDir, "save_block", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        AutoRoundDiffusion(tiny_pipeline("flux"), **knobs).quantize_and_save(out)
    monkeypatch.setattr(WorkDir, "save_block", save_block)
    assert not out.exists() and (tmp_path / "q.work" / "block_0001.pt").is_file()
    capsys.readouterr()
    resumed = tiny_pipeline("flux")
    _, path = AutoRoundDiffusion(resumed, **knobs).quantize_and_save(out)
    assert "resuming at block 3/4" in capsys.readouterr().err
    assert not (tmp_path / "q.work").exists()
    straight = tiny_pipeline("flux")
    AutoRoundDiffusion(straight, verbose=False, **knobs).quantize(tmp_path / "straight.work")
    for a, b in zip(resumed.transformer.parameters(), straight.transformer.parameters()):
        assert torch.equal(a, b)
    assert compare_pipelines(load_pipeline(path), resumed, HELD_OUT[:1], **GEN)["latent_psnr"] > 80


def test_cli_quantize_and_eval_a_pipeline_directory(tmp_path, capsys):
    from ar_cli.main import main
    from ar_mllm.diffusion.tiny import save_tiny_pipeline

    source = save_tiny_pipeline("sd3", tmp_path / "tiny-sd3")
    assert main(["quantize", str(source), "--scheme", "W8A16", "--group_size", "32", "--recipe", "rtn",
                 "--output_dir", str(tmp_path / "out")]) == 0
    saved = tmp_path / "out" / "tiny-sd3-w8g32"
    assert f"saved {saved}: diffusion pipeline, auto_round transformer" in capsys.readouterr().out
    assert main(["eval", str(saved), "--reference", str(source), "--num_inference_steps", "2", "--height", "16",
                 "--width", "16", "--max_sequence_length", "16", "--text", str(_captions(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "latent PSNR" in out and "SSIM" in out and "CLIP score: no CLIP model given" in out
    assert float(out.split("image PSNR ")[1].split(" dB")[0]) > 35


def _captions(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text("a cat on a mat\n")
    return path
