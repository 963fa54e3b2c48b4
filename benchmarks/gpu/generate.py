"""Child of run.py: make one of our auto_round checkpoints on the spot, load it through our triton backend, generate.

A random Llama (small on the GPU, tiny in a dry run) is quantized W4A16 by `ar_algos.AutoRound` (RTN, iters 0)
and saved in the auto_round format; `ar_kernels.load` reads it back twice, with backend="triton" and with
the torch reference backend. The row records the backends the layers got, how far the triton logits are from the
torch ones, whether greedy `generate` gives the same tokens, and the triton decode speed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

FULL = dict(hidden=1024, intermediate=2816, layers=4, heads=16, kv_heads=4, vocab=32000, group_size=128,
            dtype="bfloat16", prompt=32, new_tokens=64)
DRY = dict(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=256, group_size=32,
           dtype="float32", prompt=4, new_tokens=3)


def make_checkpoint(path: Path, k: dict) -> Path:
    """Quantize a random Llama with our AutoRound (RTN) and save it in the auto_round format under `path`."""
    from ar_algos import AutoRound
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=k["hidden"], intermediate_size=k["intermediate"], num_hidden_layers=k["layers"],
                      num_attention_heads=k["heads"], num_key_value_heads=k["kv_heads"], vocab_size=k["vocab"],
                      max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, k["vocab"], (8, 64), generator=torch.Generator().manual_seed(1))
    samples = [{"input_ids": r[None], "attention_mask": torch.ones_like(r[None])} for r in ids]
    AutoRound(model, scheme="W4A16", group_size=k["group_size"], iters=0, disable_opt_rtn=True, samples=samples,
              nsamples=8, seqlen=64, verbose=False).quantize_and_save(path / "ckpt", format="auto_round")
    return path / "ckpt"


def greedy(model, prompt: torch.Tensor, new_tokens: int) -> tuple[torch.Tensor, float]:
    """(generated ids, seconds) of a greedy `generate` of exactly `new_tokens` tokens."""
    sync = torch.cuda.synchronize if prompt.is_cuda else (lambda: None)
    sync()
    tick = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         pad_token_id=0)
    sync()
    return out[:, prompt.shape[1]:].cpu(), time.perf_counter() - tick


def measure(dry: bool) -> dict:
    """Build, load (triton and torch backends), compare logits and greedy tokens, time the triton decode."""
    from ar_kernels import load

    k = DRY if dry else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(Path(tmp), k)
        fast = load(ckpt, device=device, backend="triton", dtype=k["dtype"])
        ref = load(ckpt, device=device, backend="torch", dtype=k["dtype"])
    prompt = torch.randint(0, k["vocab"], (1, k["prompt"]), generator=torch.Generator().manual_seed(2)).to(device)
    with torch.no_grad():
        got, want = fast(prompt).logits.float(), ref(prompt).logits.float()
        greedy(fast, prompt, 1)  # warm-up: compiles the kernels
        tokens, seconds = greedy(fast, prompt, k["new_tokens"])
        ref_tokens, ref_seconds = greedy(ref, prompt, k["new_tokens"])
    return {"device": device, "dtype": k["dtype"], "layers": len(fast.ar_backends),
            "backends": sorted({b for b, _ in fast.ar_backends.values()}),
            "logits_rel_err": float((got - want).norm() / want.norm()),
            "same_tokens": bool(torch.equal(tokens, ref_tokens)), "new_tokens": k["new_tokens"],
            "tokens_per_s": k["new_tokens"] / seconds, "torch_backend_tokens_per_s": k["new_tokens"] / ref_seconds,
            "model": {key: k[key] for key in ("hidden", "intermediate", "layers", "vocab", "group_size")}}


def main() -> None:
    """Command line: --out FILE [--dry]; appends the result as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--dry", action="store_true")
    args = p.parse_args()
    row = measure(args.dry)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
