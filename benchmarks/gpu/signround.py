"""Child of run.py: SignRound of one system (ours or the reference auto-round) on random Llama-3-8B-shaped blocks.

Both systems get the same random bf16 model (on the CPU, as `from_pretrained` leaves it), the same random token ids
and the same knobs, and run in their default mode otherwise (device, amp, torch.compile). The wall time of
`quantize()` (input caching included), the peak CUDA memory, the peak RSS and one loss measured the same way for
both (`output_mse`: the last block's output of the quantized model against the 16-bit model on held-out token ids)
are written as one JSON line; the per-block losses each system reports are read from its log by the parent
(`block_losses`).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import resource
import time

import torch

FULL = dict(hidden=4096, intermediate=14336, heads=32, kv_heads=8, blocks=3, vocab=32000,
            iters=200, nsamples=128, seqlen=2048, batch_size=8)
DRY = dict(hidden=64, intermediate=128, heads=4, kv_heads=2, blocks=2, vocab=256,
           iters=1, nsamples=2, seqlen=16, batch_size=2)
LOSS_PATTERNS = {"ours": re.compile(r"block \d+/\d+\s+loss \S+ -> (\d[\d.eE+-]*)"),
                 "reference": re.compile(r"loss iter 0: \S+ -> iter \d+: (\d[\d.eE+-]*)")}


def knobs(dry: bool) -> dict:
    """The block shapes and SignRound knobs of a full (GPU) or dry (CPU) run."""
    return dict(DRY if dry else FULL)


def random_model(k: dict, seed: int = 0):
    """A random-initialised LlamaForCausalLM with `k['blocks']` decoder blocks, in bf16 on the CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=k["hidden"], intermediate_size=k["intermediate"], num_hidden_layers=k["blocks"],
                      num_attention_heads=k["heads"], num_key_value_heads=k["kv_heads"], vocab_size=k["vocab"],
                      max_position_embeddings=max(2048, k["seqlen"]), tie_word_embeddings=False)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # random init is much faster on the GPU
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    return model.cpu().eval()


def token_ids(k: dict, seed: int = 42) -> torch.Tensor:
    """nsamples x seqlen random token ids (the same for both systems)."""
    return torch.randint(0, k["vocab"], (k["nsamples"], k["seqlen"]), generator=torch.Generator().manual_seed(seed))


def word_tokenizer(vocab: int):
    """A local word-level tokenizer over `vocab` made-up words (the reference refuses a model without one)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    raw.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="w0", eos_token="w1", pad_token="w1")


def run_ours(model, ids: torch.Tensor, k: dict) -> None:
    """ar_algos.AutoRound with its defaults (W4G128 sym, SignRound) on the given token ids."""
    from ar_algos import AutoRound

    samples = [{"input_ids": row[None], "attention_mask": torch.ones_like(row[None])} for row in ids]
    AutoRound(model, scheme="W4A16", group_size=128, samples=samples, iters=k["iters"], nsamples=k["nsamples"],
              seqlen=k["seqlen"], batch_size=k["batch_size"]).quantize()


def run_reference(model, ids: torch.Tensor, k: dict) -> None:
    """auto_round.AutoRound 0.16.1 with its defaults on the given token ids."""
    from auto_round import AutoRound

    AutoRound(model, word_tokenizer(k["vocab"]), scheme="W4A16", group_size=128, dataset=[row[None] for row in ids],
              iters=k["iters"], nsamples=k["nsamples"], seqlen=k["seqlen"], batch_size=k["batch_size"]).quantize()


def last_block_output(model, ids: torch.Tensor) -> torch.Tensor:
    """Float32 output of the last decoder block for `ids` (the model runs on the GPU when there is one)."""
    seen = []
    hook = model.model.layers[-1].register_forward_hook(lambda m, a, out: seen.append(
        (out[0] if isinstance(out, tuple) else out).float().cpu()))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        with torch.no_grad():
            model.to(device)(ids.to(device))
    finally:
        hook.remove()
        model.cpu()
    return seen[0]


def output_mse(quantized, reference, k: dict) -> float:
    """MSE between the last block's outputs of the two models on a few held-out random sequences."""
    ids = token_ids(dict(k, nsamples=min(4, k["nsamples"])), seed=7)
    return float(torch.nn.functional.mse_loss(last_block_output(quantized, ids), last_block_output(reference, ids)))


def measure(system: str, dry: bool) -> dict:
    """Quantize the random blocks with `system`; returns seconds (total and per block), peak memory, output MSE."""
    k = knobs(dry)
    model, ids = random_model(k), token_ids(k)
    original = copy.deepcopy(model)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    (run_ours if system == "ours" else run_reference)(model, ids, k)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    vram = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"system": system, "seconds": seconds, "seconds_per_block": seconds / k["blocks"],
            "peak_vram_gib": vram, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "output_mse": output_mse(model, original, k), "knobs": k}


def block_losses(system: str, log: str) -> list[float]:
    """The final loss of each block as `system` reports it in its log (ours: after tuning; reference: best iter)."""
    return [float(x) for x in LOSS_PATTERNS[system].findall(log)]


def main() -> None:
    """Command line: --system ours|reference --out FILE [--dry]."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", choices=sorted(LOSS_PATTERNS), required=True)
    p.add_argument("--out", required=True, help="JSON-lines file the result is appended to")
    p.add_argument("--dry", action="store_true")
    args = p.parse_args()
    row = measure(args.system, args.dry)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
