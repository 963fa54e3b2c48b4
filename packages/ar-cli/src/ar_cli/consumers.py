"""Which serving stacks can load a checkpoint, and why not when they cannot (used by `ar inspect`).

Each check takes the checkpoint facts (quant_method, packing_format, per-layer schemes, whether a .gguf file is
present) and returns (ok, reason). The rules encode the loaders' documented limits: vLLM's auto-round loader takes
int 2/3/4/8-bit GPTQ/AWQ packings and needs one scheme across fused q/k/v and gate/up; mlx-lm reads its own
`quantization` dict and converts AWQ and compressed-tensors at load time; llama.cpp reads GGUF only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ar_core.scheme import QuantScheme

FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
VLLM_AUTO_ROUND_PACKINGS = ("auto_round:auto_gptq", "auto_round:gptq", "auto_round:auto_awq")
TRANSFORMERS_NEEDS = {"auto-round": "pip install auto-round", "gptq": "pip install gptqmodel optimum",
                      "awq": "pip install gptqmodel", "compressed-tensors": "pip install compressed-tensors"}


@dataclass(frozen=True)
class Facts:
    """What the consumer rules look at; schemes maps every Linear to its scheme, None when 16-bit."""

    method: str | None
    packing: str | None
    schemes: dict[str, QuantScheme | None]
    has_gguf: bool
    ct_format: str | None = None
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


def check_transformers(f: Facts) -> tuple[bool, str]:
    """transformers (+ auto-round and the other quantizer libraries)."""
    if f.has_gguf:
        return True, "transformers dequantizes GGUF to float on load (gguf_file=...; needs gguf)"
    if f.method is None:
        return True, "16-bit checkpoint"
    if f.method == "mlx":
        return False, "MLX layout: load it with mlx-lm, or export --format auto_round for transformers"
    if f.online_rotations:
        return False, _ONLINE.format(f.online_rotations)
    if f.method == "auto-round" and f.packing in ("mlx", "auto_round:mlx"):
        return False, "auto_round:mlx repacks only on macOS (auto-round's MLX backend)"
    need = TRANSFORMERS_NEEDS.get(f.method)
    if need is None:
        return False, f"quant_method {f.method!r} is not one transformers knows"
    return True, f"quant_method {f.method} ({need})"


def check_vllm(f: Facts) -> tuple[bool, str]:
    """vLLM."""
    if f.has_gguf:
        return False, "GGUF in vLLM is experimental and single-file only; serve the auto_round or GPTQ export"
    if f.method is None:
        return True, "16-bit checkpoint"
    if f.method == "mlx":
        return False, "vLLM does not read the MLX layout"
    if f.online_rotations:
        return False, _ONLINE.format(f.online_rotations)
    qs = _quantized(f)
    if f.method in ("auto-round", "gptq"):
        if f.method == "auto-round" and f.packing not in VLLM_AUTO_ROUND_PACKINGS:
            return False, (f"packing_format {f.packing!r} is not one vLLM's auto-round loader takes "
                           f"({', '.join(VLLM_AUTO_ROUND_PACKINGS)})")
        bad = next((s for s in qs if s.data_type != "int" or s.bits not in (2, 3, 4, 8)), None)
        if bad is not None:
            return False, f"{bad.data_type} {bad.bits}-bit layers: vLLM's {f.method} loader takes int 2/3/4/8-bit"
    if f.method == "awq" and any(s.bits != 4 for s in qs):
        return False, "AWQ in vLLM is 4-bit only"
    mismatch = fused_mismatch(f.schemes)
    if mismatch:
        return False, f"{mismatch}; vLLM needs one quant config per fused module"
    return True, f"quant_method {f.method}"


def check_llama_cpp(f: Facts) -> tuple[bool, str]:
    """llama.cpp."""
    if f.has_gguf:
        return True, "GGUF file"
    return False, "llama.cpp reads GGUF only; export with --format gguf:q4_k_m (or another GGUF type)"


def check_mlx_lm(f: Facts) -> tuple[bool, str]:
    """mlx-lm."""
    if f.has_gguf:
        return False, "mlx-lm does not read GGUF; export with --format mlx"
    if f.method is None:
        return True, "16-bit checkpoint"
    if f.method == "mlx":
        bad = next((s for s in _quantized(f) if s.bits not in (2, 3, 4, 5, 6, 8)), None)
        return (False, f"{bad.bits}-bit layers: MLX takes 2/3/4/5/6/8") if bad else (True, "MLX quantization dict")
    if f.method == "awq":
        return True, "mlx-lm converts AWQ weights at load time"
    if f.method == "compressed-tensors" and f.ct_format in ("pack-quantized", "nvfp4-pack-quantized"):
        return True, f"mlx-lm converts compressed-tensors {f.ct_format} at load time"
    return False, f"mlx-lm does not read quant_method {f.method} ({f.packing or f.ct_format}); export --format mlx"


CONSUMERS = {"transformers": check_transformers, "vllm": check_vllm, "llama.cpp": check_llama_cpp,
             "mlx-lm": check_mlx_lm}


def consumer_support(f: Facts) -> dict[str, tuple[bool, str]]:
    """{consumer: (can load, reason)} for every consumer in CONSUMERS."""
    return {name: check(f) for name, check in CONSUMERS.items()}
