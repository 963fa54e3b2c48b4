"""`convert` on third-party checkpoints: the real `auto-round` package's auto_gptq and auto_awq exports, converted to
auto_round and loaded back through transformers with auto-round's own QuantLinear (the reference consumer)."""

import pytest
import torch

import ar_kernels
from ar_kernels.qlinear import QuantLinear
from ar_kernels.testing import tiny_llama

pytestmark = pytest.mark.slow
pytest.importorskip("ar_export")


def word_tokenizer(words):
    """A whitespace word-level fast tokenizer over `words` (id 0 is <unk>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>"] + words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<unk>")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    pytest.importorskip("auto_round")
    from auto_round import AutoRound

    words = [f"w{i}" for i in range(250)]
    text = [" ".join(words[(i * 7 + j) % 250] for j in range(40)) for i in range(8)]
    out = tmp_path_factory.mktemp("third_party")
    ar = AutoRound(tiny_llama(128, 256), word_tokenizer(words), scheme="W4A16", group_size=32, iters=0,
                   disable_opt_rtn=True, enable_torch_compile=False, dataset=text, nsamples=4, seqlen=16)
    ar.quantize_and_save(str(out), format="auto_gptq,auto_awq")
    return {p.parent.name: p.parent for p in out.rglob("config.json")}


@pytest.mark.parametrize("source", ["auto-gptq", "auto-awq"])
def test_third_party_to_auto_round_loads_in_reference(exports, tmp_path, source):
    from transformers import AutoModelForCausalLM

    src, dst = exports[source], tmp_path / "auto_round"
    ar_kernels.convert(src, dst, format="auto_round")
    ours_src, ours_dst = ar_kernels.load(src, dtype=torch.float16), ar_kernels.load(dst, dtype=torch.float16)
    layers = {n: m for n, m in ours_src.named_modules() if isinstance(m, QuantLinear)}
    assert len(layers) == 14
    for name, m in layers.items():
        assert torch.equal(m.dequantize_weight(), ours_dst.get_submodule(name).dequantize_weight()), name
    reference = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float16)  # auto-round's quantizer
    assert type(reference.model.layers[0].mlp.up_proj).__module__.startswith("auto_round")
    ids = torch.randint(1, 251, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = ours_src(ids).logits.float(), reference(ids).logits.float()
    assert torch.allclose(got, want, atol=2e-3, rtol=1e-2), float((got - want).abs().max())
