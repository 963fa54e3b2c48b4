"""GGUF from a checkpoint folder without transformers (convert_folder, `ar-gguf`): the file is byte-identical to what
write_gguf writes from a transformers model holding the same weights and tokenizer, for float, auto_round and
auto_gptq folders, and no transformers module is imported on the way."""

import io
import json
import subprocess
import sys

import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from ar_core.errors import CheckpointError  # noqa: E402
from ar_core.registry import FORMATS  # noqa: E402
from ar_export import register_all  # noqa: E402
from ar_export.gguf import convert_folder, read_folder  # noqa: E402
from ar_export.gguf.cli import main  # noqa: E402
from ar_export.testing import (quantize_model, save_tiny_model, tiny_llama, tiny_tokenizer,  # noqa: E402
                               workspace_gguf)

register_all()


def saved(tmp_path, fmt, scheme, tie=False):
    model, tok = tiny_llama(tie_word_embeddings=tie), tiny_tokenizer()
    if fmt is None:
        return save_tiny_model(tmp_path / "float", tie_word_embeddings=tie)
    return FORMATS.get(fmt).save(tmp_path / fmt, model, quantize_model(model, scheme), tokenizer=tok)


@pytest.mark.parametrize("fmt, scheme, mix, tie", [
    (None, None, "q4_k_m", True),
    ("auto_round", "W4A16G32", "q4_0", False),  # sym g32: records packed as q4_0
    ("auto_round", "W4A16", "q4_k_m", False),  # g128: dequantized and re-quantized by the mix
    ("auto_gptq", "W8A16", "q8_0", False),
])
def test_folder_gguf_is_byte_identical_to_the_in_workspace_writer(tmp_path, fmt, scheme, mix, tie):
    folder = saved(tmp_path, fmt, scheme, tie)
    ours = convert_folder(folder, tmp_path / "folder.gguf", mix)
    theirs = workspace_gguf(folder, tmp_path / "workspace.gguf", mix)
    assert ours.read_bytes() == theirs.read_bytes()
    reader = gguf.GGUFReader(ours)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == 384


def test_records_of_a_gguf_type_are_packed_as_is(tmp_path):
    model = tiny_llama()
    quantized = quantize_model(model, "W4A16G32")
    folder = FORMATS.get("auto_round").save(tmp_path / "q", model, quantized, tokenizer=tiny_tokenizer())
    _, records = read_folder(folder)
    name = "model.layers.0.mlp.down_proj"
    assert torch.equal(records[name].codes, quantized[name].codes)
    assert torch.equal(records[name].zero, quantized[name].zero)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(convert_folder(folder, tmp_path / "q.gguf",
                                                                                 "q4_0")).tensors}
    assert types["blk.0.ffn_down.weight"] == "Q4_0"


def test_the_folder_path_imports_no_transformers(tmp_path):
    folder = saved(tmp_path, "auto_round", "W4A16G32")
    code = ("import sys; from ar_export.gguf import convert_folder; "
            f"convert_folder({str(folder)!r}, {str(tmp_path / 'x.gguf')!r}, 'q4_0'); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'transformers'], 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_command_writes_the_file_and_names_bad_input(tmp_path, capsys):
    folder = saved(tmp_path, None, None)
    assert main([str(folder), str(tmp_path / "m.gguf"), "--mix", "q8_0"]) == 0
    assert gguf.GGUFReader(tmp_path / "m.gguf").fields["general.file_type"].contents() == 7  # MOSTLY_Q8_0
    assert main([str(tmp_path), str(tmp_path / "n.gguf")]) == 2
    assert "no .safetensors files" in capsys.readouterr().err
    done = subprocess.run([sys.executable, "-m", "ar_export.gguf", str(folder), str(tmp_path / "p.gguf"), "--mix",
                           "q8_0"], capture_output=True, text=True)
    assert done.returncode == 0 and (tmp_path / "p.gguf").read_bytes() == (tmp_path / "m.gguf").read_bytes()


def test_unsupported_packing_and_missing_tokenizer_are_named(tmp_path):
    folder = saved(tmp_path, "auto_round", "W4A16")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"]["packing_format"] = "auto_round:auto_awq"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="packing_format"):
        convert_folder(folder, tmp_path / "a.gguf")
    plain = save_tiny_model(tmp_path / "plain")
    (plain / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer.json or tokenizer.model"):
        convert_folder(plain, tmp_path / "b.gguf")


def test_a_sentencepiece_tokenizer_model_alone_gives_the_llama_vocabulary(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    plain = save_tiny_model(tmp_path / "spm")
    (plain / "tokenizer.json").unlink()
    lines = [f"The quick brown fox jumps over the lazy dog number {i}." for i in range(200)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=300,
                                   model_type="bpe", byte_fallback=True, minloglevel=2)
    (plain / "tokenizer.model").write_bytes(buf.getvalue())
    (plain / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<s>"}))
    reader = gguf.GGUFReader(convert_folder(plain, tmp_path / "spm.gguf", "q8_0"))
    pieces = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    tokens = reader.fields["tokenizer.ggml.tokens"]
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama" and len(tokens.data) == 384
    assert tokens.contents()[:300] == [pieces.IdToPiece(i) for i in range(300)]
    assert reader.fields["tokenizer.ggml.bos_token_id"].contents() == pieces.bos_id()
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is True
