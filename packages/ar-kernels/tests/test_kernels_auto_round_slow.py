"""The loader on checkpoints written by the real `auto-round` package (0.16.1, iters=0, tiny random Llama).

1. One W4A16 (g32) quantization exported as auto_round, auto_gptq, auto_awq, llm_compressor and mlx: logits match
   auto-round's own QuantLinear model loaded through transformers, and every export gives the same logits.
2. MXFP4, NVFP4, W2A16 asym and FPW8A16 exported together with auto-round's `fake` format: our dequantized weights
   equal the reference's own fake-quantized weights (stored in bf16).
"""

import pytest
import torch

from ar_kernels import load

pytestmark = pytest.mark.slow

FORMATS = {"auto_round": "auto-round-auto-gptq", "auto_gptq": "auto-gptq", "auto_awq": "auto-awq",
           "llm_compressor": "llm-compressor-wint-a16", "mlx": "mlx"}


def _tokenizer_and_text():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = [" ".join(f"the quick brown fox jumps over the lazy dog {i + j} times" for j in range(6))
            for i in range(64)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")
    return fast, text


def _quantize(out, scheme: str, formats: str, **kw) -> dict:
    """Run auto-round RTN on a fresh tiny Llama and export; returns {export dir name: path}."""
    pytest.importorskip("auto_round")
    from auto_round import AutoRound
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, text = _tokenizer_and_text()
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=128,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    ar = AutoRound(model, tok, scheme=scheme, iters=0, enable_torch_compile=False, dataset=text[:16], nsamples=4,
                   seqlen=16, **kw)
    ar.quantize_and_save(str(out), format=formats)
    return {p.parent.name: p.parent for p in out.rglob("config.json")}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    dirs = _quantize(tmp_path_factory.mktemp("w4"), "W4A16", ",".join(FORMATS), group_size=32)
    assert set(FORMATS.values()) <= set(dirs), sorted(dirs)
    return {fmt: dirs[sub] for fmt, sub in FORMATS.items()}


def test_logits_match_auto_round_dequantized_model(exports):
    from transformers import AutoModelForCausalLM

    ours = load(exports["auto_round"], dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(exports["auto_round"], dtype=torch.float32,
                                               device_map="cpu").eval()
    names = list(ours.ar_backends)
    assert len(names) == 14  # 7 linears x 2 blocks; lm_head (300 rows) stays 16-bit
    for name in names:
        mine, theirs = ours.get_submodule(name), ref.get_submodule(name)
        with torch.no_grad():
            w_ref = theirs(torch.eye(mine.in_features)).t()  # the reference's dequantized weight via its forward
        assert torch.allclose(mine.dequantize_weight(), w_ref, rtol=1e-3, atol=1e-6), name
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = ours(ids).logits, ref(ids).logits
        assert float((got - want).norm() / want.norm()) < 1e-3
        assert ours.generate(ids[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "auto_round"])
def test_every_export_of_the_same_codes_gives_the_same_logits(exports, fmt):
    ids = torch.randint(3, 300, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = load(exports["auto_round"], dtype=torch.float32)(ids).logits
        model = load(exports[fmt], dtype=torch.float32)
        got = model(ids).logits
    assert len(model.ar_backends) == 14
    assert float((got - want).norm() / want.norm()) < 1e-5


@pytest.mark.parametrize("scheme,kw", [("MXFP4", {}), ("NVFP4", {}), ("FPW8A16", {}),
                                       ("W2A16", {"group_size": 32, "sym": False})])
def test_weights_match_auto_round_fake_export(tmp_path, scheme, kw):
    from safetensors import safe_open

    dirs = _quantize(tmp_path, scheme, "auto_round,fake", **kw)
    packed = next(p for name, p in dirs.items() if name != "fake")
    model = load(packed, dtype=torch.float32)
    assert len(model.ar_backends) == 14
    fake = safe_open(str(dirs["fake"] / "model.safetensors"), "pt")
    for name in model.ar_backends:
        want = fake.get_tensor(name + ".weight").float()  # bf16 QDQ weight written by auto-round
        assert torch.allclose(model.get_submodule(name).dequantize_weight(), want, rtol=8e-3, atol=1e-5), name
