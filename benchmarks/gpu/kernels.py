"""Child of run.py: the kernel table, our quantized linear layers against a bf16 `torch.matmul` of the same shape.

For each bit width, weight shape (in x out) and token count it times y = x @ W^T through our triton backend, or
where it does not take the layer (W3) through the backend `ar_kernels.backends.select_backend` picks, and the
bf16 matmul, each after a warm-up, as the median of CUDA-event timings (perf_counter on the CPU).
Achieved GB/s counts the bytes each side must read and write (packed codes, scales and packed zeros, or the bf16
weight; plus activations and output); the roofline fraction divides it by the HBM bandwidth of the GPU model.
One JSON line per row is appended to --out as soon as it is measured, so a run cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

FULL = dict(bits=(4, 2, 3, 8), shapes=((4096, 4096), (4096, 14336), (14336, 4096)), tokens=(1, 16, 2048),
            group_size=128, warmup=10, reps=50)
DRY = dict(bits=(4, 2, 3, 8), shapes=((128, 256),), tokens=(1, 16), group_size=32, warmup=1, reps=2)
HBM_BYTES_PER_S = (("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12))


def hbm_bandwidth(device_name: str) -> float | None:
    """Peak HBM bytes/s of the GPU model named in `device_name` (H100 SXM 3.35 TB/s, H200 4.8 TB/s), else None."""
    return next((bw for model, bw in HBM_BYTES_PER_S if model in device_name), None)


def time_call(fn, warmup: int, reps: int, cuda: bool) -> float:
    """Median seconds of fn() over `reps` calls after `warmup` calls (CUDA events on the GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            tick = time.perf_counter()
            fn()
            times.append(time.perf_counter() - tick)
    return statistics.median(times)


def quantized_layer(bits: int, k: int, n: int, group_size: int, device: str):
    """(module, backend name) of a random W{bits}G{group_size} sym layer: triton, else the selector's choice.

    The weight is drawn and quantized on `device` (fast on the GPU); the codes are packed on the CPU.
    """
    from ar_core.errors import PluginError
    from ar_core.quant import quantize
    from ar_core.scheme import QuantScheme
    from ar_kernels.backends import select_backend

    gen = torch.Generator(device).manual_seed(bits)
    scheme = QuantScheme(bits=bits, group_size=group_size, sym=True)
    qt = quantize(torch.randn(n, k, generator=gen, device=device) * 0.05, scheme)
    qt = dataclasses.replace(qt, codes=qt.codes.cpu(), scale=qt.scale.cpu(), zero=qt.zero.cpu())
    try:
        backend, _ = select_backend(qt.scheme, "gptq", device, k, n, backend="triton")
    except PluginError:
        backend, _ = select_backend(qt.scheme, "gptq", device, k, n)
    module = backend.module_class("gptq").from_quantized(qt, None, "gptq")
    return module.to(device=device, dtype=torch.bfloat16), backend.name


def layer_bytes(module) -> int:
    """Bytes of the quantized layer's buffers (packed codes, scales, packed zeros)."""
    return sum(b.numel() * b.element_size() for name, b in module.named_buffers() if name != "g_idx")


def row(module, backend: str, w: torch.Tensor, m: int, cfg: dict, bandwidth: float | None) -> dict:
    """One table row: quantized and bf16 timings, GB/s and roofline fractions for x[m, k] @ W[n, k]^T."""
    n, k = w.shape
    cuda = w.is_cuda
    x = torch.randn(m, k, device=w.device, dtype=torch.bfloat16)
    with torch.no_grad():
        t_q = time_call(lambda: module(x), cfg["warmup"], cfg["reps"], cuda)
        t_bf16 = time_call(lambda: torch.matmul(x, w.t()), cfg["warmup"], cfg["reps"], cuda)
    io = 2 * m * (k + n)
    gbs_q, gbs_bf16 = (layer_bytes(module) + io) / t_q / 1e9, (2 * n * k + io) / t_bf16 / 1e9
    return {"bits": module.scheme.bits, "group_size": cfg["group_size"], "in": k, "out": n, "tokens": m,
            "backend": backend, "us": t_q * 1e6, "bf16_us": t_bf16 * 1e6, "speedup": t_bf16 / t_q, "gb_s": gbs_q,
            "bf16_gb_s": gbs_bf16, "roofline": gbs_q * 1e9 / bandwidth if bandwidth else None,
            "bf16_roofline": gbs_bf16 * 1e9 / bandwidth if bandwidth else None, "tflops": 2 * m * k * n / t_q / 1e12}


def main() -> None:
    """Command line: --out FILE [--dry]; appends one JSON line per measured row."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--dry", action="store_true")
    args = p.parse_args()
    cfg = DRY if args.dry else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bandwidth = hbm_bandwidth(torch.cuda.get_device_name()) if device == "cuda" else None
    for bits in cfg["bits"]:
        for k, n in cfg["shapes"]:
            module, backend = quantized_layer(bits, k, n, cfg["group_size"], device)
            w = torch.randn(n, k, device=device, dtype=torch.bfloat16)
            for m in cfg["tokens"]:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row(module, backend, w, m, cfg, bandwidth)) + "\n")


if __name__ == "__main__":
    main()
