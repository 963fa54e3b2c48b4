"""Bits per weight with and without the 16-bit tensors, on a bf16-source model tuned in float32."""

import pytest
import torch

from ar_cli.main import main
from ar_eval.size import describe_size, size_report
from ar_export import get_writer
from ar_export.testing import quantize_model, tiny_llama


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    src = tmp_path_factory.mktemp("bf16-src")
    tiny_llama().to(torch.bfloat16).save_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    out = get_writer("auto_round").save(tmp_path_factory.mktemp("q") / "w4", model, quantize_model(model, "W4A16"),
                                        source_dir=src)
    return src, out


def test_checkpoint_smaller_than_its_bf16_source_with_both_bits_figures(saved):
    src, out = saved
    rep, source = size_report(out), size_report(src)
    assert rep.tensor_bytes < source.tensor_bytes
    assert source.quantized_bits_per_weight is None and source.bits_per_weight == pytest.approx(16.0)
    # 4-bit codes + an fp16 scale and a packed 4-bit zero point per group of 128
    assert rep.quantized_bits_per_weight == pytest.approx(4 + 16 / 128 + 4 / 128)
    assert rep.quantized_bits_per_weight < rep.bits_per_weight < 16  # the bf16 embeddings and norms weigh in
    text = describe_size(rep.to_dict())
    assert f"{rep.bits_per_weight:.3f} bits per weight" in text and "16-bit tensors included" in text
    assert f"{rep.quantized_bits_per_weight:.3f} in the quantized layers alone" in text


def test_inspect_prints_both_bits_figures(capsys, saved):
    assert main(["inspect", str(saved[1])]) == 0
    out = capsys.readouterr().out
    assert "(16-bit tensors included)" in out and "in the quantized layers alone" in out
