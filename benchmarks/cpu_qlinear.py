"""CPU W4G128 linear layers: ours (the `cpu` backend, CPUIntLinear) against dense bf16/fp32 matmuls, the torch
reference backend (GPTQLinear) and the reference auto-round 0.16.1's CPU QuantLinear, in one run; then `generate`
tokens/s of the embedded SmolLM2-135M and Qwen2.5-Coder-0.5B with every block linear at W4 (cpu backend, RTN asym,
group 128 where every block linear's width allows it, else 64) against the bf16 model.

Systems run interleaved (A/B/A/B, `--reps` rounds) on the same thread count; each cell is the median of the rounds.
Prints markdown tables and the load average before and after.

    .venv/bin/python benchmarks/cpu_qlinear.py --threads 1 --reps 5

Results and the command used are in benchmarks/README.md ("CPU inference: W4G128 linear layers").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

SHAPES = ((4096, 4096), (4096, 14336), (14336, 4096))  # (in_features, out_features)


def parse_args(argv=None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--slow_reps", type=int, default=2, help="rounds for the dequantize-every-call layers")
    p.add_argument("--tokens", type=int, default=32, help="new tokens per generate call (0: skip generate)")
    p.add_argument("--skip_layers", action="store_true")
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"],
                   help="embedded models to generate with")
    return p.parse_args(argv)


def reference_layer(ours_gptq, bits: int, group: int):
    """auto-round 0.16.1's CPU QuantLinear (auto_round_extension.torch) holding the same GPTQ buffers."""
    from auto_round_extension.torch.qlinear_torch import QuantLinear

    layer = QuantLinear(bits, group, ours_gptq.in_features, ours_gptq.out_features, bias=False)
    layer.qweight.copy_(ours_gptq.qweight)
    layer.qzeros.copy_(ours_gptq.qzeros)
    layer.scales.copy_(ours_gptq.scales)
    return layer.eval()


def timed(fn) -> float:
    """Milliseconds of one call."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def layer_rows(args) -> list[str]:
    """One markdown row per shape and batch."""
    from ar_kernels.qlinear import GPTQLinear
    from ar_kernels.qlinear.cpu import CPUIntLinear
    from ar_kernels.testing import random_int_qt

    rows = []
    for k, n in SHAPES:
        qt = random_int_qt(n, k, 4, 128, sym=False, seed=0)
        ours = CPUIntLinear.from_quantized(qt)
        gptq = GPTQLinear.from_quantized(qt, None, "gptq")
        ref = reference_layer(gptq, 4, 128)
        dense32 = torch.randn(n, k) * 0.02
        dense16 = dense32.bfloat16()
        for m in (1, 16):
            x16, x32 = torch.randn(m, k).bfloat16(), torch.randn(m, k)
            systems = {"ours bf16": lambda: ours(x16), "ours fp32": lambda: ours(x32),
                       "dense bf16": lambda: torch.nn.functional.linear(x16, dense16),
                       "dense fp32": lambda: torch.nn.functional.linear(x32, dense32),
                       "reference bf16": lambda: ref(x16), "torch backend bf16": lambda: gptq(x16)}
            times: dict[str, list[float]] = {s: [] for s in systems}
            with torch.no_grad():
                for f in systems.values():
                    f()  # warm-up: lazy kernels, allocations
                for rnd in range(args.reps):
                    for name, f in systems.items():
                        if rnd < args.slow_reps or name not in ("reference bf16", "torch backend bf16"):
                            times[name].append(timed(f))
            t = {s: statistics.median(v) for s, v in times.items()}
            rows.append(f"| {k}x{n} | {m} | {t['ours bf16']:.2f} | {t['ours fp32']:.1f} | {t['dense bf16']:.2f} | "
                        f"{t['dense fp32']:.2f} | {t['reference bf16']:.1f} | {t['torch backend bf16']:.1f} | "
                        f"{t['dense bf16'] / t['ours bf16']:.2f}x | {t['reference bf16'] / t['ours bf16']:.0f}x |")
            print(rows[-1], flush=True)
    return rows


def w4_group(model) -> int:
    """The largest of 128, 64, 32 that divides the in_features of every block linear."""
    ins = {m.in_features for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    return next(g for g in (128, 64, 32) if all(k % g == 0 for k in ins))


def w4_model(model, group: int):
    """The model with every block linear replaced by an RTN W4 asym CPUIntLinear of group size `group`."""
    from ar_core.quant import quantize
    from ar_core.scheme import QuantScheme
    from ar_kernels.qlinear.cpu import CPUIntLinear

    scheme = QuantScheme(bits=4, group_size=group, sym=False)
    for name, mod in list(model.named_modules()):
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            qt = quantize(mod.weight.detach().float(), scheme)
            model.set_submodule(name, CPUIntLinear.from_quantized(qt, mod.bias))
    return model


def generate_rows(args) -> list[str]:
    """Tokens/s of greedy generate per embedded model, bf16 model vs W4 (cpu backend), interleaved."""
    from transformers import AutoModelForCausalLM

    from ar_algos.models import embedded_model_path

    rows = []
    for name in args.models:
        path = embedded_model_path(name)
        bf16 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
        group = w4_group(bf16)
        w4 = w4_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval(), group)
        ids = torch.tensor([[1, 504, 3458, 314, 5248, 282, 260]])
        rates: dict[str, list[float]] = {"bf16": [], "W4": []}
        with torch.no_grad():
            for _ in range(max(2, args.reps // 2)):
                for kind, model in (("bf16", bf16), ("W4", w4)):
                    ms = timed(lambda: model.generate(ids, max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                                      do_sample=False))
                    rates[kind].append(args.tokens / ms * 1e3)
        best = {k: max(v) for k, v in rates.items()}
        rows.append(f"| {name} | g{group} | {args.tokens} | {best['bf16']:.1f} | {best['W4']:.1f} | "
                    f"{best['W4'] / best['bf16']:.2f}x |")
        print(rows[-1], flush=True)
        del bf16, w4
    return rows


def main(argv=None) -> None:
    """Run the layer table, then the generate table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average before {os.getloadavg()}", flush=True)
    if not args.skip_layers:
        print("| in x out | batch | ours bf16 ms | ours fp32 ms | dense bf16 ms | dense fp32 ms | reference bf16 ms | "
              "torch backend bf16 ms | dense bf16 / ours | reference / ours |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        layer_rows(args)
    if args.tokens:
        print("| model | W4 asym group | new tokens | bf16 tok/s | W4 (cpu backend) tok/s | W4 / bf16 |")
        print("|---|---|---|---|---|---|")
        generate_rows(args)
    print(f"load average after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
