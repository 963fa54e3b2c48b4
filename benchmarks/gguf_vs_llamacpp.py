"""Our GGUF quantization against llama.cpp's own quantizer, on the same 16-bit model, at the same llama.cpp mixes.

1. The 16-bit model (embedded SmolLM2-135M by default, bf16 weights loaded in float32) is written by our writer as
   a bf16 GGUF.
2. llama.cpp quantizes that file with `llama_model_quantize` (through llama-cpp-python's ctypes binding), without
   and with an importance matrix. The importance matrix is llama.cpp's definition (mean of x^2 per input channel of
   every weight, over the calibration tokens) collected with forward hooks on the 16-bit model; with
   `--imatrix_file` a file made by `llama-imatrix` is used instead. Q2_K_S requires an imatrix in llama.cpp, so its
   run without one uses the Q2_K mix (more bits on attn_v/attn_output/ffn_down); mix q2_k compares Q2_K both ways.
3. Ours writes the same mixes with `ar_export.gguf.write_gguf`: optimized RTN (no imatrix, and weighted by the same
   imatrix) and SignRound (`ar_algos.AutoRound` with scheme GGUF:<mix>, iters > 0, whose layer plan takes the mix's
   per-tensor types from the writer's own planner, as `ar quantize` does) on the same calibration tokens.
4. Every file is read back with `ar_export.gguf.read_tensors`, dequantized into the HF model and scored by the same
   evaluator (`ar_eval.kl_divergence`) against the 16-bit model on the same held-out wiki test windows: perplexity,
   KL divergence, top-1 agreement; bits per weight count the 2-D weights as stored.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/gguf_vs_llamacpp.py --iters 20 --nsamples 16 --seqlen 256

Needs llama-cpp-python (0.3.36, built from source) in the environment.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# ours: mix -> the llama.cpp file types it is compared with (without imatrix, with imatrix)
LLAMA_FTYPES = {"q4_k_m": ("Q4_K_M", "Q4_K_M"), "q2_k": ("Q2_K", "Q2_K"), "q2_k_s": ("Q2_K", "Q2_K_S")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="embedded model name or a local model directory")
    p.add_argument("--mixes", default="q4_k_m,q2_k", help=f"comma list from {', '.join(LLAMA_FTYPES)}")
    p.add_argument("--iters", type=int, default=20, help="SignRound iterations (0 skips the SignRound rows)")
    p.add_argument("--nsamples", type=int, default=16, help="calibration samples (imatrix and SignRound)")
    p.add_argument("--seqlen", type=int, default=256, help="calibration sample length")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval_windows", type=int, default=4, help="held-out windows of --eval_seqlen tokens")
    p.add_argument("--eval_seqlen", type=int, default=512)
    p.add_argument("--runs", default="llama,opt-rtn,signround", help="comma list of llama, opt-rtn, signround")
    p.add_argument("--imatrix_file", default=None, help="use this llama-imatrix output for llama.cpp's runs")
    p.add_argument("--work", default=None, help="folder for the GGUF files (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write all results to this JSON file")
    args = p.parse_args(argv)
    args.mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [m for m in args.mixes if m not in LLAMA_FTYPES]
    if bad or not args.mixes:
        p.error(f"--mixes {','.join(bad) or '(empty)'}: choose from {','.join(LLAMA_FTYPES)}")
    return args


def load(name: str):
    """(float32 model, tokenizer) of an embedded model name or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name).expanduser()
    if not path.is_dir():
        from ar_algos.models import embedded_model_path

        path = embedded_model_path(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)


def gguf_names(model) -> dict[str, str]:
    """HF module name -> GGUF tensor name of every 2-D weight."""
    from ar_export.gguf.arch import get_arch, tensor_specs

    return {s.module: s.gguf_name for s in tensor_specs(model, get_arch(model.config)) if s.tensor.ndim == 2}


def collect_mean_sq(model, samples: list[dict]) -> dict[str, torch.Tensor]:
    """llama.cpp's importance matrix: mean x^2 per input channel of every linear, by HF module name."""
    from ar_algos.blocks import find_linears
    from ar_algos.rtn import collect_imatrix

    layers = {n: m for n, m in find_linears(model).items() if n != "lm_head"}
    with collect_imatrix(layers) as sums, torch.no_grad():
        for s in samples:
            model(s["input_ids"])
    n_tokens = sum(s["input_ids"].numel() for s in samples)
    return {n: v / n_tokens for n, v in sums.items()}


def write_bf16(model, tokenizer, path: Path) -> Path:
    """Our writer's GGUF with every 2-D weight in bf16 (llama.cpp's quantizer input)."""
    from ar_export.gguf import write_tensors
    from ar_export.gguf.writer import encode_tensor, plan_types

    tensors = [encode_tensor(spec, "bf16" if spec.tensor.ndim >= 2 else "f32", None, None)
               for spec, _ in plan_types(model, "q8_0")]
    return write_tensors(model, tokenizer, path, "q8_0", tensors)


def llama_quantize(src: Path, dst: Path, ftype: str, imatrix: dict[str, np.ndarray] | None, threads: int) -> Path:
    """llama.cpp's `llama_model_quantize` of `src` into `dst` as LLAMA_FTYPE_MOSTLY_<ftype>, with an optional
    importance matrix (GGUF tensor name -> per-input-channel weights)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = threads
    keep = []
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()  # zeroed last entry ends the list
        for entry, (name, values) in zip(entries, imatrix.items()):
            buf = np.ascontiguousarray(values, dtype=np.float32)
            keep.append(buf)
            entry.name, entry.size = name.encode(), buf.size
            entry.data = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        keep.append(entries)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize {ftype} failed with {rc}")
    return dst


def read_imatrix_file(path: str) -> dict[str, np.ndarray]:
    """A llama-imatrix GGUF output (<name>.in_sum2 and <name>.counts per tensor) -> mean x^2 by tensor name."""
    import gguf

    sums, counts = {}, {}
    for t in gguf.GGUFReader(path).tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name.removesuffix(".in_sum2")] = np.asarray(t.data, np.float32).reshape(-1)
        elif t.name.endswith(".counts"):
            counts[t.name.removesuffix(".counts")] = float(np.asarray(t.data).reshape(-1)[0])
    return {n: v / max(counts.get(n, 1.0), 1.0) for n, v in sums.items()}


def signround_records(model, tokenizer, samples: list[dict], mix: str, args: argparse.Namespace) -> dict:
    """SignRound records of every linear of a copy of `model`, each tuned in its ggml type under `mix`."""
    from ar_algos import AutoRound

    ar = AutoRound(copy.deepcopy(model), tokenizer=tokenizer, scheme=f"GGUF:{mix.upper()}", samples=samples,
                   iters=args.iters, nsamples=args.nsamples, seqlen=args.seqlen, batch_size=args.batch_size,
                   seed=args.seed, device="cpu", verbose=False)
    return ar.quantize()[1]


def score(path: Path, model, ids: torch.Tensor, protocol) -> dict:
    """Read a GGUF file back, dequantize it into a copy of `model` and score it against `model`."""
    from ar_eval import kl_divergence
    from ar_export.gguf import dequantized_state_dict, read_tensors

    tensors = read_tensors(path)
    q = copy.deepcopy(model)
    q.load_state_dict(dequantized_state_dict(model, tensors))
    with torch.no_grad():
        res = kl_divergence(q, model, ids, protocol).to_dict()
    weights = [t for t in tensors if len(t.shape) >= 2]
    bits = sum(t.data.nbytes for t in weights) * 8 / sum(int(np.prod(t.shape)) for t in weights)
    types: dict[str, int] = {}
    for t in weights:
        types[t.qtype] = types.get(t.qtype, 0) + 1
    return {"ppl": res["ppl_quantized"], "ppl_16bit": res["ppl_reference"], "kl_mean": res["kl_mean"],
            "kl_p99": res["kl_p99"], "top1": res["top1_agreement"], "bits_per_weight": bits, "types": types,
            "tensor_types": {t.name: t.qtype for t in weights}}


def table(rows: list[dict]) -> str:
    """Markdown table of all rows."""
    lines = ["| mix | quantizer | imatrix | ppl | KL mean | KL p99 | top-1 | bits/weight | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mix']} | {r['quantizer']} | {r['imatrix']} | {r['ppl']:.3f} | {r['kl_mean']:.4f} | "
                     f"{r['kl_p99']:.3f} | {100 * r['top1']:.1f}% | {r['bits_per_weight']:.3f} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every quantizer on every mix, score all files the same way and print one table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from ar_algos.data import get_calibration_data
    from ar_eval import EvalProtocol, load_text, tokenize
    from ar_export.gguf import write_gguf

    model, tokenizer = load(args.model)
    samples = get_calibration_data(tokenizer, "wiki", nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed)
    ids = tokenize(tokenizer, load_text("wiki")[0])
    protocol = EvalProtocol(seqlen=args.eval_seqlen, max_windows=args.eval_windows)
    work = Path(args.work or tempfile.mkdtemp(prefix="gguf_vs_llamacpp_"))
    work.mkdir(parents=True, exist_ok=True)
    names = gguf_names(model)
    start = time.perf_counter()
    imatrix = collect_mean_sq(model, samples)
    imatrix_s = time.perf_counter() - start
    llama_imatrix = (read_imatrix_file(args.imatrix_file) if args.imatrix_file
                     else {names[n]: v.numpy() for n, v in imatrix.items() if n in names})
    llama_imatrix_label = "llama-imatrix" if args.imatrix_file else "hooks"
    src = write_bf16(model, tokenizer, work / "bf16.gguf")
    rows: list[dict] = []

    def run(mix: str, quantizer: str, label: str, make) -> None:
        t0 = time.perf_counter()
        path = make()
        seconds = time.perf_counter() - t0
        row = {"mix": mix, "quantizer": quantizer, "imatrix": label, "seconds": seconds, "file": str(path),
               **score(path, model, ids, protocol)}
        rows.append(row)
        print(f"{mix} {quantizer} {label}: ppl {row['ppl']:.3f} KL {row['kl_mean']:.4f} top-1 {row['top1']:.3f} "
              f"bpw {row['bits_per_weight']:.3f} {row['types']} ({seconds:.1f}s)", file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))

    for mix in args.mixes:
        plain, with_im = LLAMA_FTYPES[mix]
        if "llama" in args.runs:
            run(mix, f"llama.cpp {plain}", "none", lambda: llama_quantize(
                src, work / f"llama-{plain}.gguf", plain, None, args.threads))
            run(mix, f"llama.cpp {with_im}", llama_imatrix_label, lambda: llama_quantize(
                src, work / f"llama-{with_im}-imatrix.gguf", with_im, llama_imatrix, args.threads))
        if "opt-rtn" in args.runs:
            run(mix, "ours opt-RTN", "none", lambda: write_gguf(model, tokenizer, work / f"ours-{mix}.gguf", mix))
            run(mix, "ours opt-RTN", "hooks", lambda: write_gguf(
                model, tokenizer, work / f"ours-{mix}-imatrix.gguf", mix, imatrix=imatrix))
        if "signround" in args.runs and args.iters > 0:
            run(mix, f"ours SignRound iters {args.iters}", "hooks", lambda: write_gguf(
                model, tokenizer, work / f"ours-{mix}-signround.gguf", mix,
                quantized=signround_records(model, tokenizer, samples, mix, args), imatrix=imatrix))
    ref = rows[0]["ppl_16bit"] if rows else float("nan")
    print(f"\n16-bit ppl {ref:.3f} on {args.eval_windows}x{args.eval_seqlen} wiki test tokens; imatrix from "
          f"{args.nsamples}x{args.seqlen} wiki train tokens ({imatrix_s:.1f}s); files in {work}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
