"""Which serving stacks can load a checkpoint, and why not when they cannot (used by `ar inspect`).

The checkpoint facts (quant_method, packing_format, per-layer schemes and in_features, whether a .gguf file is
present) name an ar format; the declared capability table (ar_export.capabilities, the same one docs/formats.md,
`ar list formats` and the writers' support checks read) answers per consumer and per layer, with the reason. On top,
vLLM's whole-checkpoint limits: its auto-round loader takes the GPTQ/AWQ packings only and needs one scheme across
fused q/k/v and gate/up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ar_core.scheme import QuantScheme

FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
VLLM_AUTO_ROUND_PACKINGS = ("auto_round:auto_gptq", "auto_round:gptq", "auto_round:auto_awq")


@dataclass(frozen=True)
class Facts:
    """What the consumer rules look at; schemes maps every Linear to its scheme, None when 16-bit."""

    method: str | None
    packing: str | None
    schemes: dict[str, QuantScheme | None]
    has_gguf: bool
    ct_format: str | None = None
    in_features: dict[str, int] | None = None
    online_rotations: int = 0  # layers whose rotation_config entry needs an online Hadamard at inference


_ONLINE = ("{} layers need online Hadamard rotations (rotation_config 'online'), which auto-round 0.16.1 does not "
           "re-insert (it reads rotation_config as its own schema); only ar_kernels.load runs this checkpoint")


def _key(s: QuantScheme | None):
    return None if s is None else (s.bits, s.group_size, s.sym, s.data_type)


def fused_mismatch(schemes: dict[str, QuantScheme | None]) -> str | None:
    """The first fused group (q/k/v or gate/up of one module) whose members differ, described; None if all agree."""
    for names in FUSED:
        for layer, s in schemes.items():
            parent, _, leaf = layer.rpartition(".")
            if leaf != names[0]:
                continue
            members = {n: schemes.get(f"{parent}.{n}") for n in names if f"{parent}.{n}" in schemes}
            if len({_key(m) for m in members.values()}) > 1:
                desc = ", ".join(f"{n}={'16-bit' if m is None else f'{m.bits}-bit g{m.group_size}'}"
                                 for n, m in members.items())
                return f"fused module {parent}.[{'/'.join(members)}] mixes schemes ({desc})"
    return None


def _quantized(f: Facts) -> list[QuantScheme]:
    return [s for s in f.schemes.values() if s is not None]


# libraries through which transformers' from_pretrained reads a checkpoint; the one each format names in its config
_THROUGH = ("transformers", "auto-round", "compressed-tensors", "gptqmodel", "gguf-py")
_OWNER = {"auto_round": "auto-round", "auto_round:mlx": "auto-round", "fp8": "auto-round", "auto_gptq": "gptqmodel",
          "auto_awq": "gptqmodel", "llm_compressor": "compressed-tensors", "gguf": "gguf-py"}
_HOW = {"transformers": "16-bit weights", "auto-round": "pip install auto-round",
        "compressed-tensors": "pip install compressed-tensors", "gptqmodel": "pip install gptqmodel optimum",
        "gguf-py": "gguf_file=...; pip install gguf", "mlx-lm": "pip install mlx-lm", "llama.cpp": "declared",
        "vllm": "declared"}


def checkpoint_format(f: Facts) -> str | None:
    """The ar format name (a row family of ar_export.capabilities.TABLE) these facts describe; None if unknown."""
    if f.has_gguf:
        return "gguf"
    if f.method is None:
        return "fake"
    if f.method == "auto-round":
        if f.packing in ("mlx", "auto_round:mlx"):
            return "auto_round:mlx"
        return "fp8" if any(isinstance(s.group_size, tuple) for s in _quantized(f)) else "auto_round"
    return {"gptq": "auto_gptq", "awq": "auto_awq", "compressed-tensors": "llm_compressor", "mlx": "mlx"}.get(f.method)


def _vllm_rules(f: Facts) -> str | None:
    """vLLM limits that depend on the whole checkpoint: auto-round packings and one scheme per fused module."""
    if f.method == "auto-round" and f.packing not in VLLM_AUTO_ROUND_PACKINGS:
        return (f"packing_format {f.packing!r} is not one vLLM's auto-round loader takes "
                f"({', '.join(VLLM_AUTO_ROUND_PACKINGS)})")
    mismatch = fused_mismatch(f.schemes)
    return f"{mismatch}; vLLM needs one quant config per fused module" if mismatch else None


def consumer_support(f: Facts) -> dict[str, tuple[bool, str]]:
    """{consumer: (can load, reason)} from the declared capability table (ar_export.capabilities) per layer, with
    each layer's in_features when the facts carry them; `transformers` answers whether transformers'
    from_pretrained loads it through any library (auto-round, compressed-tensors, gptqmodel, gguf)."""
    from ar_export.capabilities import verdicts

    fmt = checkpoint_format(f)
    if fmt is None:
        why = f"quant_method {f.method!r} is not one ar's capability table knows"
        return {c: (False, why) for c in ("transformers", "mlx-lm", "llama.cpp", "vllm")}
    out = {c: (ok, f"{fmt} checkpoint ({_HOW[c]})" if ok else why)
           for c, (ok, why) in verdicts(fmt, f.schemes, f.in_features).items()}
    through = [c for c in _THROUGH if out[c][0]]
    out["transformers"] = (True, f"through {through[0]}: {out[through[0]][1]}") if through else \
        out[_OWNER.get(fmt, "transformers")]
    if f.online_rotations:  # only ar's own loader re-inserts them
        why = _ONLINE.format(f.online_rotations)
        out.update({c: (False, why) for c in (*_THROUGH, "transformers", "vllm") if c in out})
    extra = _vllm_rules(f) if out["vllm"][0] and fmt != "fake" else None
    return {**out, "vllm": (False, extra)} if extra else out
