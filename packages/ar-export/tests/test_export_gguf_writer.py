"""GGUF writer end to end on a tiny random Llama with an in-process SentencePiece tokenizer: gguf's reader and
transformers read our file, and transformers' logits equal our own dequantized model's."""

import copy
import io
import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
spm = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")

from ar_core.errors import PluginError, SchemeError  # noqa: E402
from ar_core.export_request import build_request  # noqa: E402
from ar_core.pack.gguf import rows_to_float  # noqa: E402
from ar_core.presets import gguf_scheme, parse_scheme  # noqa: E402
from ar_core.quant import quantize  # noqa: E402
from ar_core.registry import Registry  # noqa: E402
from ar_core.scheme import QuantScheme  # noqa: E402
from ar_export.gguf import (FORMAT, dequantized_state_dict, export_tensors, layer_schemes,  # noqa: E402
                            layer_types, write_gguf)
from ar_export.gguf import writer  # noqa: E402
from ar_export.gguf.format import request_mix  # noqa: E402
from ar_export.gguf.writer import quantize_rows  # noqa: E402

TEXT = "Hello world, the quick brown fox jumps over the lazy dog 42 times."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    lines = [f"The quick brown fox jumps over the lazy dog number {i}." for i in range(200)]
    lines += [f"Hello world, this is a tiny tokenizer test {i}!" for i in range(200)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=320,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0,
                                   minloglevel=2)
    (d / "tokenizer.model").write_bytes(buf.getvalue())
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    return transformers.AutoTokenizer.from_pretrained(d)


def tiny_llama(**kw):
    torch.manual_seed(0)
    cfg = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=320, max_position_embeddings=128, tie_word_embeddings=False)
    cfg.update(kw)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def ours_and_theirs(model, path, tensors, ids):
    ours = copy.deepcopy(model)
    ours.load_state_dict(dequantized_state_dict(model, tensors))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                               dtype=torch.float32).eval()
    with torch.no_grad():
        return ours(ids).logits, theirs(ids).logits, model(ids).logits


def test_llama_q4_k_m_round_trip(tokenizer, tmp_path):
    model = tiny_llama()
    path = write_gguf(model, tokenizer, tmp_path / "tiny.gguf", "q4_k_m")
    reader = gguf.GGUFReader(path)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["output.weight"] == "Q6_K" and types["blk.1.attn_v.weight"] == "Q6_K"
    assert types["blk.0.attn_v.weight"] == "Q4_K" and types["blk.1.ffn_down.weight"] == "Q6_K"
    assert types["blk.0.attn_norm.weight"] == "F32"
    field = reader.get_field("general.architecture")
    assert field.contents() == "llama"
    assert reader.get_field("llama.block_count").contents() == 2
    assert reader.get_field("tokenizer.ggml.model").contents() == "llama"
    # the bytes in the file are the bytes export_tensors produced
    tensors = export_tensors(model, "q4_k_m")
    by_name = {t.name: t for t in tensors}
    for t in reader.tensors:
        assert np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint8),
                              np.ascontiguousarray(by_name[t.name].data).reshape(-1).view(np.uint8)), t.name
    ids = torch.tensor([tokenizer(TEXT).input_ids])
    ours, theirs, fp = ours_and_theirs(model, path, tensors, ids)
    assert torch.equal(ours, theirs)
    assert 0 < float((ours - fp).abs().max()) < 0.5 * float(fp.abs().max())
    # the tokenizer comes back from the GGUF with the same ids
    tok2 = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert tok2(TEXT).input_ids == tokenizer(TEXT).input_ids


def test_tuned_records_are_packed_as_is(tmp_path):
    model = tiny_llama()
    types = layer_types(model, "q4_k_m")
    assert types["model.layers.1.self_attn.v_proj"] == "q6_k"
    schemes = layer_schemes(model, "q4_k_m")
    assert schemes["model.layers.1.self_attn.v_proj"] == gguf_scheme("q6_k").replace(gguf="q4_k_m")
    quantized = {}
    g = torch.Generator().manual_seed(1)
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"):
        w = model.get_submodule(name).weight.detach()
        s = gguf_scheme(types[name])
        v = (torch.rand(w.shape[0], w.shape[1] // s.group_size, s.group_size, generator=g) - 0.5) * 0.6
        quantized[name] = quantize(w, s, v=v)  # a "tuned" record whose codes RTN would not reproduce
    quantized["model.layers.1.mlp.up_proj"] = quantize(model.model.layers[1].mlp.up_proj.weight.detach(),
                                                       gguf_scheme("q3_k"))  # record type wins over the mix
    path = write_gguf(model, None, tmp_path / "tuned.gguf", "q4_k_m", quantized=quantized)
    tensors = export_tensors(model, "q4_k_m", quantized)
    state = dequantized_state_dict(model, tensors)
    for name, qt in quantized.items():
        assert torch.equal(state[name + ".weight"], qt.dequantize()), name
    assert {t.name: t.qtype for t in tensors}["blk.1.ffn_up.weight"] == "q3_k"
    ours, theirs, _ = ours_and_theirs(model, path, tensors, torch.randint(0, 320, (1, 10)))
    assert torch.equal(ours, theirs)


def test_rows_that_do_not_fit_fall_back(tmp_path):
    model = tiny_llama(intermediate_size=304)  # ffn_down rows of 304: no 256 or 32 blocks -> bf16
    tensors = export_tensors(model, "q4_k_m")
    types = {t.name: t.qtype for t in tensors}
    assert types["blk.0.ffn_down.weight"] == "bf16" and types["blk.0.ffn_up.weight"] == "q4_k"
    model2 = tiny_llama(hidden_size=288, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512)
    types2 = {t.name: t.qtype for t in export_tensors(model2, "q4_k_m")}
    assert types2["blk.0.attn_q.weight"] == "q5_0" and types2["output.weight"] == "q8_0"
    assert types2["blk.0.ffn_down.weight"] in ("q4_k", "q6_k")
    path = write_gguf(model, None, tmp_path / "fallback.gguf", "q4_k_m")
    ours, theirs, _ = ours_and_theirs(model, path, tensors, torch.randint(0, 320, (1, 10)))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("mix", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_legacy_mixes(mix, tmp_path):
    model = tiny_llama(num_hidden_layers=1)
    path = write_gguf(model, None, tmp_path / f"{mix}.gguf", mix)
    reader = gguf.GGUFReader(path)
    t = next(t for t in reader.tensors if t.name == "blk.0.ffn_gate.weight")
    assert t.tensor_type.name == mix.upper()
    w = model.model.layers[0].mlp.gate_proj.weight.detach().numpy()
    ref = gguf.quants.quantize(w, t.tensor_type)
    data = np.asarray(t.data)
    assert np.array_equal(data, ref)  # ggml's own RTN, bit-exact
    assert np.array_equal(rows_to_float(mix, data, w.shape), gguf.quants.dequantize(data, t.tensor_type))


@pytest.mark.parametrize("mix", ["q4_0", "q5_0"])
def test_legacy_scale_search_with_imatrix(mix):
    w = torch.randn(64, 512, generator=torch.Generator().manual_seed(5)) * 0.02
    imp = torch.rand(512, generator=torch.Generator().manual_seed(6)) ** 4 * 100

    def err(rows):
        return float((((torch.from_numpy(rows_to_float(mix, rows, w.shape)) - w) ** 2) * imp).sum())

    assert err(quantize_rows(w, mix, imp)) < 0.9 * err(quantize_rows(w, mix))


def test_chunked_quantization_is_identical(monkeypatch):
    w = torch.randn(300, 512, generator=torch.Generator().manual_seed(4))
    whole = quantize_rows(w, "q4_k")
    monkeypatch.setattr(writer, "CHUNK_ELEMENTS", 512 * 7)
    assert np.array_equal(quantize_rows(w, "q4_k"), whole)


def test_imatrix_is_used(tmp_path):
    model = tiny_llama(num_hidden_layers=1)
    name = "model.layers.0.mlp.gate_proj"
    imp = torch.rand(256, generator=torch.Generator().manual_seed(3)) ** 4 * 100
    plain = {t.module: t for t in export_tensors(model, "q4_k_m")}[name]
    weighted = {t.module: t for t in export_tensors(model, "q4_k_m", imatrix={name: imp})}[name]
    w = model.get_submodule(name).weight.detach()

    def err(t):
        return float((((t.dequantize() - w) ** 2) * imp).sum())

    assert err(weighted) < err(plain)


def test_format_plugin_saves_and_checks(tmp_path):
    model = tiny_llama(num_hidden_layers=1)
    w = model.model.layers[0].mlp.down_proj.weight.detach()
    qt = quantize(w, gguf_scheme("q4_k_m"))
    out = FORMAT.save(tmp_path / "out", model, {"model.layers.0.mlp.down_proj": qt})
    files = list(out.glob("*.gguf"))
    assert len(files) == 1 and files[0].name.endswith("-q4_k_m.gguf")
    assert gguf.GGUFReader(files[0]).get_field("general.file_type").contents() == 15  # MOSTLY_Q4_K_M
    assert FORMAT.supports(gguf_scheme("q6_k")) and FORMAT.supports(gguf_scheme("q8_0"))
    assert FORMAT.supports(QuantScheme(bits=16))
    assert request_mix(build_request({"a": qt}, {"gguf": "Q3_K_L"})) == "Q3_K_L"
    with pytest.raises(SchemeError, match="mix"):
        request_mix(build_request({"a": quantize(w, gguf_scheme("q4_k"))}, {}))
    w4 = parse_scheme("W4A16")
    assert not FORMAT.supports(w4)
    with pytest.raises(SchemeError, match="GGUF"):
        FORMAT.check({"model.layers.0.mlp.down_proj": w4})


def test_registry_entry_point_and_missing_extra(monkeypatch):
    from ar_core.registry import FORMATS

    assert FORMATS.get("gguf") is FORMAT  # the installed ar-export advertises the plugin
    ep = EntryPoint(name="gguf", value="ar_export.gguf:FORMAT", group="ar.formats")
    reg = Registry("format", "ar.formats", {"gguf": "pip install 'ar-export[gguf]'"})
    reg._entry_points = {"gguf": ep}
    assert reg.get("gguf") is FORMAT
    import sys

    for mod in [m for m in sys.modules if m == "ar_export.gguf" or m.startswith("ar_export.gguf.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "gguf", None)  # the extra is not installed
    fresh = Registry("format", "ar.formats", {"gguf": "pip install 'ar-export[gguf]'"})
    fresh._entry_points = {"gguf": ep}
    with pytest.raises(PluginError, match=r"pip install 'ar-export\[gguf\]'"):
        fresh.get("gguf")


def test_byte_level_bpe_tokenizer_round_trip(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tk = tokenizers.Tokenizer(tokenizers.models.BPE())
    tk.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([f"The quick brown fox jumps over the lazy dog number {i}." for i in range(200)], trainer)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>",
                                               bos_token="<|endoftext|>")
    path = write_gguf(tiny_llama(num_hidden_layers=1), tok, tmp_path / "bpe.gguf", "q8_0")
    reader = gguf.GGUFReader(path)
    assert reader.get_field("tokenizer.ggml.model").contents() == "gpt2"
    assert len(reader.get_field("tokenizer.ggml.tokens").contents()) == 320  # padded to the embedding rows
    back = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    text = "The lazy dog, 12 foxes & ünïcödé!"
    assert back(text).input_ids == tok(text).input_ids
    assert back.decode(back(text).input_ids) == text
