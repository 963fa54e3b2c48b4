"""`ar inspect PATH`: scheme per layer, bits per weight, size, format, and which consumers can load it."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from ar_core.errors import CheckpointError, PluginError
from ar_eval.size import WEIGHT_SUFFIXES, describe_size, safetensors_header, size_report, weight_files

from .consumers import Facts, consumer_support
from .flags import UsageError


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `ar inspect`."""
    p = sub.add_parser("inspect", help="scheme per layer, bits per weight, size, and which consumers can load it",
                       allow_abbrev=False)
    p.add_argument("path", help="a saved checkpoint directory or a .gguf file")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--device", default="cpu", help="device whose kernel choice to explain: cpu (default), cuda, "
                                                   "mps, auto")
    p.add_argument("--backend", help="explain a forced backend (torch, triton, mlx) instead of the automatic choice")
    p.add_argument("--backends", action="store_true", help="also show why the other backends were rejected")
    p.add_argument("--trust_remote_code", action="store_true",
                   help="let the checkpoint run its own Python code from its folder (off by default)")
    return p


def _describe(s) -> str:
    if s is None:
        return "16-bit"
    return s.gguf or f"{s.data_type} {s.bits}-bit g{s.group_size} {'sym' if s.sym else 'asym'}"


def _module_tensors(files: list[Path]) -> tuple[dict[str, int], set[str]]:
    """(tensor bytes per module, modules that store MLX-style `scales`) from the safetensors headers."""
    nbytes: Counter = Counter()
    scales = set()
    for f in files:
        if f.suffix == ".safetensors":
            for name, t in safetensors_header(f).items():
                module, _, leaf = name.rpartition(".")
                nbytes[module] += t["data_offsets"][1] - t["data_offsets"][0]
                if leaf == "scales":
                    scales.add(module)
    return dict(nbytes), scales


def _online_rotations(q: dict | None) -> int:
    """How many layers ar's own rotation_config (its 'online' entries) rotates at inference."""
    rotation = (q or {}).get("rotation_config")
    online = rotation.get("online") if isinstance(rotation, dict) else None
    return sum(len(e.get("layers", [])) for e in online) if isinstance(online, list) else 0


def _hf_layers(path: Path, files: list[Path], trust_remote_code: bool) -> tuple[dict, dict]:
    """(facts fields, rows) of a transformers-style directory."""
    from ar_kernels.loading.load import find_blocks, quantization_config
    from ar_kernels.loading.plan import plan_layers, quant_method
    from torch import nn

    from ar_eval.size import meta_model

    cfg = json.loads((path / "config.json").read_text())
    q = quantization_config(path) if ("quantization_config" in cfg or "quantization" in cfg) else None
    try:
        model = meta_model(path, trust_remote_code)
    except ValueError as exc:  # transformers has no causal-LM class for this config (e.g. a vision-language model)
        raise CheckpointError(f"{str(path)!r}: cannot list its layers, {str(exc).splitlines()[0]} (inspect reads "
                              "causal language models only)") from None
    linears = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    nbytes, has_scales = _module_tensors(files)
    plans = plan_layers(q, linears, find_blocks(model), has_scales) if q else {n: None for n in linears}
    rows = [{"layer": n, "scheme": _describe(p.scheme if p else None), "packing": p.packing if p else "-",
             "bits_per_weight": 8 * nbytes[n] / (i * o) if nbytes.get(n) else None}
            for n, (i, o) in linears.items() for p in [plans.get(n)]]
    facts = dict(method=quant_method(q) if q else None, packing=(q or {}).get("packing_format"),
                 schemes={n: p.scheme if p else None for n, p in plans.items()},
                 ct_format=(q or {}).get("format"), online_rotations=_online_rotations(q),
                 in_features={n: i for n, (i, _) in linears.items()})
    return facts, rows


def _gguf_tensors(path: Path) -> list:
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise PluginError("reading GGUF files needs the gguf package; run `pip install 'ar-export[gguf]'`") from exc
    return GGUFReader(path).tensors


def add_backends(path: Path, rows: list[dict], device: str, backend: str | None,
                 trust_remote_code: bool = False) -> None:
    """Put ar_kernels.explain's kernel choice on each quantized row: backend (None when no backend can run the
    layer), reason, and the rejected backends with why."""
    from ar_kernels import explain

    chosen = {r["layer"]: r for r in explain(path, device=device, backend=backend,
                                             trust_remote_code=trust_remote_code) if r["quantized"]}
    for row in rows:
        e = chosen.get(row["layer"])
        if e is not None:
            row.update(backend=e["backend"], reason=e["reason"].split("; rejected:")[0], rejected=e["rejected"])


def format_folders(path: str | Path) -> list[Path]:
    """The checkpoint subfolders of a multi-format output folder (`ar quantize --format auto_round,auto_gptq`
    writes one per format); [] when `path` is a checkpoint itself or holds none."""
    p = Path(path)
    if not p.is_dir() or (p / "config.json").is_file() or any(f.suffix in WEIGHT_SUFFIXES for f in p.iterdir()):
        return []
    return sorted(d for d in p.iterdir() if d.is_dir() and ((d / "config.json").is_file() or any(d.glob("*.gguf"))))


def inspect_checkpoint(path: str | Path, device: str = "cpu", backend: str | None = None,
                       trust_remote_code: bool = False) -> dict:
    """Everything `ar inspect` prints, as a JSON-ready dict; quantized layers of a transformers-style checkpoint
    carry the inference backend `ar_kernels.load` would pick on `device` (or `backend` when forced) and why. The
    checkpoint's own code runs only with `trust_remote_code=True`. A multi-format output folder is a
    CheckpointError naming its subfolders (`run` inspects each)."""
    p = Path(path)
    subfolders = format_folders(p)
    if subfolders:
        raise CheckpointError(f"{str(p)!r} holds one checkpoint per format in subfolders "
                              f"({', '.join(d.name for d in subfolders)}); inspect one of them, e.g. "
                              f"`ar inspect {p / subfolders[0].name}`")
    files = weight_files(p)
    ggufs = [f for f in files if f.suffix == ".gguf"]
    if p.is_dir() and (p / "config.json").is_file():
        fields, rows = _hf_layers(p, [f for f in files if f.suffix != ".gguf"], trust_remote_code)
        if fields["method"] is not None:
            add_backends(p, rows, device, backend, trust_remote_code)
        size = size_report(p, trust_remote_code=trust_remote_code)
    elif ggufs:
        tensors = _gguf_tensors(ggufs[0])
        rows = [{"layer": t.name, "scheme": t.tensor_type.name, "packing": "gguf",
                 "bits_per_weight": 8 * int(t.n_bytes) / int(t.n_elements)} for t in tensors]
        fields = dict(method=None, packing=None, schemes={})
        # a GGUF holds every weight, so its element count is the parameter count
        size = size_report(ggufs[0], sum(int(t.n_elements) for t in tensors))
    else:
        raise CheckpointError(f"{str(p)!r} is neither a model directory with config.json nor a .gguf file")
    facts = Facts(has_gguf=bool(ggufs), **fields)
    support = consumer_support(facts)
    return {"path": str(p), "quant_method": facts.method, "packing_format": facts.packing,
            "gguf_files": [f.name for f in ggufs], **size.to_dict(), "layers": rows,
            "scheme_counts": dict(Counter(r["scheme"] for r in rows)),
            "consumers": {k: {"ok": ok, "reason": why} for k, (ok, why) in support.items()}}


def render(info: dict, rejected: bool = False) -> str:
    """The human-readable report (`rejected`: list why the other backends were not chosen)."""
    width = max(len(r["layer"]) for r in info["layers"]) if info["layers"] else 5
    lines = [f"{'layer'.ljust(width)}  {'scheme':<24} {'packing':<10} {'backend':<8} bpw"]
    for r in info["layers"]:
        bpw = f"{r['bits_per_weight']:.3f}" if r["bits_per_weight"] else "-"
        backend = (r["backend"] or "NONE") if "reason" in r else "-"
        lines.append(f"{r['layer'].ljust(width)}  {r['scheme']:<24} {r['packing']:<10} {backend:<8} {bpw}")
    fmt = info["quant_method"] or ("gguf" if info["gguf_files"] else "16-bit (no quantization config)")
    lines += ["", f"checkpoint   {info['path']}",
              f"format       {fmt}" + (f" (packing {info['packing_format']})" if info["packing_format"] else ""),
              f"size         {describe_size(info)}",
              "schemes      " + "; ".join(f"{n} x {s}" for s, n in info["scheme_counts"].items()), "consumers"]
    for name, c in info["consumers"].items():
        lines.append(f"  {name:<19} {'yes' if c['ok'] else 'no ':<4} {c['reason']}")
    return "\n".join(lines + render_backends(info["layers"], rejected))


def render_backends(rows: list[dict], rejected: bool) -> list[str]:
    """Lines grouping the quantized layers by kernel choice (backend and reason; with `rejected`, also why each
    other backend was not used)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "reason" in r:
            key = (r["backend"], r["scheme"], tuple(sorted(r["rejected"].items())) if rejected else ())
            groups.setdefault(key, []).append(r)
    if not groups:
        return []
    lines = ["inference backends (ar_kernels.load)"]
    for (backend, scheme, why_not), members in groups.items():
        lines.append(f"  {backend or 'NONE':<13} {len(members)} x {scheme}: {members[0]['reason']}")
        lines += [f"      not {name}: {why}" for name, why in why_not]
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the inspection of `args.path` (of each format's subfolder, for a multi-format output folder)."""
    if args.backend is not None:
        from ar_kernels import backend_table

        names = [b["name"] for b in backend_table()]
        if args.backend not in names:
            raise UsageError(f"--backend {args.backend!r} is not a backend; one of {', '.join(names)}")
    subfolders = format_folders(args.path)
    infos = [inspect_checkpoint(p, args.device, args.backend, args.trust_remote_code)
             for p in subfolders or [args.path]]
    if args.json and not args.backends:
        for row in (r for info in infos for r in info["layers"]):
            row.pop("rejected", None)
    if not subfolders:
        print(json.dumps(infos[0], indent=2) if args.json else render(infos[0], args.backends))
    elif args.json:
        print(json.dumps({"path": str(args.path), "formats": {p.name: i for p, i in zip(subfolders, infos)}},
                         indent=2))
    else:
        print(f"{args.path} holds {len(subfolders)} checkpoints, one per format: "
              f"{', '.join(p.name for p in subfolders)}")
        print("\n".join(f"\n=== {p.name} ===\n{render(i, args.backends)}" for p, i in zip(subfolders, infos)))
    return 0
