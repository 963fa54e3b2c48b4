"""Every architecture the GGUF writer knows, on tiny random configs: transformers loads our file and its logits
equal our dequantized model's (q/k permutation, Gemma norm offset, MoE expert split, fused phi3 weights)."""

import copy

import pytest
import torch

pytest.importorskip("gguf")
T = pytest.importorskip("transformers")

from ar_export.gguf import dequantized_state_dict, export_tensors, write_gguf  # noqa: E402

COMMON = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=320, max_position_embeddings=128)
# transformers reads some hparams from fixed defaults (Qwen3 head_dim 128, Qwen3-MoE moe_intermediate_size 768
# and norm_topk_prob True), so the tiny configs use those values.
ARCHES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 128}),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  {"head_dim": 128, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 768,
                   "norm_topk_prob": True}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 64}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 64}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}),
}


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_transformers_reads_our_gguf(arch, tmp_path):
    config_cls, model_cls, extra = ARCHES[arch]
    torch.manual_seed(0)
    model = getattr(T, model_cls)(getattr(T, config_cls)(**COMMON, **extra)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)  # non-trivial norms catch offset mistakes
    path = write_gguf(model, None, tmp_path / f"{arch}.gguf", "q4_k_m")
    ours = copy.deepcopy(model)
    ours.load_state_dict(dequantized_state_dict(model, export_tensors(model, "q4_k_m")))
    theirs = T.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.randint(0, 320, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b, fp = ours(ids).logits, theirs(ids).logits, model(ids).logits
    assert torch.equal(a, b)
    assert float((a - fp).abs().max()) < 0.5 * float(fp.abs().max())
