"""The one declared capability table: per format x scheme kind x bit width, which consumer loads the checkpoint.

Every row says, for each consumer in CONSUMERS, "yes" or "no: <why>". The writers' `supports` / `check_schemes`
(ar_export.support), `format_matrix`, `ar list formats`, docs/formats.md and `ar inspect` (ar_cli.consumers) all read
it, and tests/test_consumer_table.py loads every "yes" of it in the real consumer (vLLM and llama.cpp columns are
declared from their code and docs and not run here: DECLARED). `layer_verdicts` adds the per-layer shape limits the
consumers have (a group size that does not divide in_features).
"""

from __future__ import annotations

from dataclasses import dataclass

from ar_core.scheme import QuantScheme

YES = "yes"
# transformers: plain transformers, no quantizer library (a 16-bit checkpoint); auto-round, compressed-tensors and
# gptqmodel: transformers' from_pretrained with that library; gguf-py: transformers' gguf_file loader (gguf-py
# dequantizes); mlx-lm: mlx_lm.load (mlx[cpu] on Linux); llama.cpp and vllm: declared only.
CONSUMERS = ("transformers", "auto-round", "compressed-tensors", "gptqmodel", "gguf-py", "mlx-lm", "llama.cpp",
             "vllm")
DECLARED = ("llama.cpp", "vllm")
INT_KINDS = ("int_sym", "int_asym")

_GGUF_ONLY = "no: llama.cpp reads GGUF only; export with --format gguf:q4_k_m (or another GGUF type)"
_NOT_GGUF = "no: not a GGUF file (gguf-py reads .gguf files only)"
_NO_QC = "no: the checkpoint has no quantization_config for it"


def _no(consumer: str, what: str) -> str:
    return f"no: {consumer} does not read {what}"


# consumer -> verdict when the consumer does not read the format at all (rows overwrite the consumers that do)
_BASE: dict[str, dict[str, str]] = {
    "auto_round": {"transformers": "no: quant_method auto-round needs the auto-round package (column auto-round)",
                   "compressed-tensors": _no("compressed-tensors", "quant_method auto-round"),
                   "gptqmodel": "no: transformers hands quant_method auto-round to auto-round, not gptqmodel",
                   "gguf-py": _NOT_GGUF, "mlx-lm": _no("mlx-lm", "quant_method auto-round") + "; export --format mlx",
                   "llama.cpp": _GGUF_ONLY},
    "auto_round:mlx": {"transformers": "no: quant_method auto-round needs the auto-round package (column auto-round)",
                       "auto-round": "no: auto-round repacks auto_round:mlx only on macOS (its MLX backend)",
                       "compressed-tensors": _no("compressed-tensors", "quant_method auto-round"),
                       "gptqmodel": _no("gptqmodel", "the MLX layout"), "gguf-py": _NOT_GGUF,
                       "llama.cpp": _GGUF_ONLY, "vllm": _no("vLLM", "the MLX layout")},
    "auto_gptq": {"transformers": "no: quant_method gptq needs gptqmodel and optimum (column gptqmodel)",
                  "compressed-tensors": _no("compressed-tensors", "quant_method gptq"), "gguf-py": _NOT_GGUF,
                  "mlx-lm": _no("mlx-lm", "quant_method gptq") + "; export --format mlx", "llama.cpp": _GGUF_ONLY},
    "auto_awq": {"transformers": "no: quant_method awq needs gptqmodel (column gptqmodel)",
                 "compressed-tensors": _no("compressed-tensors", "quant_method awq"), "gguf-py": _NOT_GGUF,
                 "llama.cpp": _GGUF_ONLY},
    "llm_compressor": {"transformers": "no: quant_method compressed-tensors needs compressed-tensors (its column)",
                       "auto-round": _no("auto-round", "quant_method compressed-tensors"),
                       "gptqmodel": _no("gptqmodel", "quant_method compressed-tensors"), "gguf-py": _NOT_GGUF,
                       "llama.cpp": _GGUF_ONLY},
    "mlx": {"transformers": _no("transformers", "the MLX layout") + "; export --format auto_round",
            "auto-round": _no("auto-round", "the MLX layout"),
            "compressed-tensors": _no("compressed-tensors", "the MLX layout"),
            "gptqmodel": _no("gptqmodel", "the MLX layout"), "gguf-py": _NOT_GGUF, "llama.cpp": _GGUF_ONLY,
            "vllm": _no("vLLM", "the MLX layout")},
    "fp8": {"transformers": "no: quant_method auto-round needs the auto-round package (column auto-round)",
            "auto-round": "no: auto-round 0.16.1 compares the list group_size [128, 128] with 0 and fails to load",
            "compressed-tensors": _no("compressed-tensors", "quant_method auto-round"),
            "gptqmodel": _no("gptqmodel", "FP8 weights"), "gguf-py": _NOT_GGUF,
            "mlx-lm": _no("mlx-lm", "FP8 weights"), "llama.cpp": _GGUF_ONLY,
            "vllm": "no: vLLM's auto-round loader takes int 2/3/4/8-bit only"},
    "fake": {"auto-round": _NO_QC, "compressed-tensors": _NO_QC, "gptqmodel": _NO_QC, "gguf-py": _NOT_GGUF,
             "llama.cpp": "no: llama.cpp reads GGUF only; convert the 16-bit folder or export --format gguf:<type>"},
    "gguf": {"transformers": "no: a .gguf file; transformers reads it with gguf_file= (column gguf-py)",
             "auto-round": _no("auto-round", "GGUF"), "compressed-tensors": _no("compressed-tensors", "GGUF"),
             "gptqmodel": _no("gptqmodel", "GGUF"), "mlx-lm": _no("mlx-lm", "GGUF") + "; export with --format mlx",
             "vllm": "no: GGUF in vLLM is experimental and single-file only; serve the auto_round or GPTQ export"},
}


@dataclass(frozen=True)
class Capability:
    """One row of the table: format `format` stores schemes of `kind` at `bits`; `loads` maps every consumer of
    CONSUMERS to "yes" or "no: <why>"."""

    format: str
    kind: str
    bits: tuple[int, ...]
    loads: dict[str, str]


def _row(fmt: str, kind: str, bits: tuple[int, ...], **loads: str) -> Capability:
    merged = {**_BASE[fmt], **{k.replace("_", "-").replace("llama-cpp", "llama.cpp"): v for k, v in loads.items()}}
    missing = [c for c in CONSUMERS if c not in merged]
    assert not missing, f"capability row {fmt} {kind} lacks {missing}"
    return Capability(fmt, kind, bits, {c: merged[c] for c in CONSUMERS})


_VLLM_INT_ONLY = "no: vLLM's auto-round loader takes int 2/3/4/8-bit only"
_CT_ASYM = ("no: transformers 5.23 + compressed-tensors 0.20 expect an unpacked zero point for asym pack-quantized "
            "weights and fail to load them (compressed-tensors' own decompressor reads our tensors)")
_MLX_BITS = (2, 3, 4, 5, 6, 8)
_FAKE_KINDS = {"int_sym": _MLX_BITS, "int_asym": _MLX_BITS, "int_w8a8": (8,), "int_act": (4, 8), "mx_fp": (4, 6, 8),
               "mx_int": (2, 4, 8), "nv_fp": (4,), "fp8_static": (8,), "fp8_weight": (8,), "fp8_block": (8,),
               "fp8_dynamic": (8,), "gguf": (2, 3, 4, 5, 6, 8)}

TABLE: tuple[Capability, ...] = (
    _row("auto_round", "int_sym", (2, 3, 4, 8), auto_round=YES, vllm=YES),
    _row("auto_round", "int_asym", (4,), auto_round=YES, vllm=YES),
    _row("auto_round", "int_asym", (2, 3, 8), auto_round=YES,
         vllm="no: asym 2/3/8-bit is stored with packing_format 'auto_round', which vLLM's auto-round loader does "
              "not take"),
    _row("auto_round", "mx_fp", (4, 8), auto_round=YES, vllm=_VLLM_INT_ONLY),
    _row("auto_round", "mx_int", (4,), auto_round=YES, vllm=_VLLM_INT_ONLY),
    _row("auto_round", "nv_fp", (4,), auto_round=YES, vllm=_VLLM_INT_ONLY),
    _row("auto_round", "fp8_static", (8,), auto_round=YES, vllm=_VLLM_INT_ONLY),
    _row("auto_round", "fp8_weight", (8,), vllm=_VLLM_INT_ONLY,
         auto_round="no: auto-round 0.16.1 refuses per-tensor FP8 weights on load ('group_size must be greater than "
                    "0 or equal to -1')"),
    *(_row("auto_round:mlx", k, _MLX_BITS, mlx_lm=YES) for k in INT_KINDS),
    *(_row("auto_gptq", k, (4,), auto_round=YES, gptqmodel=YES, vllm=YES) for k in INT_KINDS),
    *(_row("auto_gptq", k, (2, 3, 8), auto_round=YES, gptqmodel=YES, vllm=YES) for k in INT_KINDS),
    *(_row("auto_awq", k, (4,), auto_round=YES, gptqmodel=YES, mlx_lm=YES, vllm=YES) for k in INT_KINDS),
    _row("llm_compressor", "int_sym", (2, 4, 8), compressed_tensors=YES, vllm=YES,
         mlx_lm="no: mlx-lm 0.32 leaves the pack-quantized tensors unconverted ('Received 42 parameters not in "
                "model' on a 2-layer model); export --format mlx"),
    _row("llm_compressor", "int_asym", (2, 4, 8), compressed_tensors=_CT_ASYM, vllm=YES,
         mlx_lm=_no("mlx-lm", "asym compressed-tensors weights")),
    *(_row("llm_compressor", k, b, compressed_tensors=YES, vllm=YES,
           mlx_lm=_no("mlx-lm", f"compressed-tensors {k} weights"))
      for k, b in (("int_w8a8", (8,)), ("mx_fp", (4, 8)), ("nv_fp", (4,)), ("fp8_static", (8,)),
                   ("fp8_weight", (8,)), ("fp8_block", (8,)))),
    *(_row("mlx", k, _MLX_BITS, mlx_lm=YES) for k in INT_KINDS),
    _row("fp8", "fp8_block", (8,)),
    *(_row("fake", k, b, transformers=YES, mlx_lm=YES, vllm=YES) for k, b in _FAKE_KINDS.items()),
    _row("gguf", "gguf", (2, 3, 4, 5, 6, 8), gguf_py=YES, llama_cpp=YES),
)


def capability(fmt: str, kind: str, bits: int) -> Capability | None:
    """The row of format `fmt` for schemes of `kind` at `bits`, or None when the format cannot store them."""
    return next((c for c in TABLE if c.format == fmt and c.kind == kind and bits in c.bits), None)


def formats() -> list[str]:
    """Every format name of the table, in table order."""
    return list(dict.fromkeys(c.format for c in TABLE))


def kinds(fmt: str) -> dict[str, tuple[int, ...]]:
    """{kind: bit widths} format `fmt` can store."""
    out: dict[str, tuple[int, ...]] = {}
    for c in TABLE:
        if c.format == fmt:
            out[c.kind] = tuple(sorted(set(out.get(c.kind, ())) | set(c.bits)))
    return out


def shape_limit(consumer: str, scheme: QuantScheme, kind: str, in_features: int) -> str | None:
    """Why `consumer` cannot run one layer of `in_features` inputs quantized with `scheme`, or None.

    Verified on CPU (tests/test_consumer_table.py): auto-round picks no kernel for an int layer whose group size
    does not divide in_features (FakeActQuantLinear, which then fails in forward), gptqmodel's int4 CPU kernel
    fails in forward, and compressed-tensors refuses the layer on load; vLLM's GPTQ/AWQ linear methods raise the
    same (declared). compressed-tensors runs FP8_BLOCK (128x128) only where 128 divides in_features
    (tests/test_consumer_table_smollm2.py, SmolLM2's 576-wide layers).
    """
    gs = scheme.group_size
    if kind == "fp8_block" and consumer == "compressed-tensors" and in_features % gs[-1]:
        return (f"in_features {in_features} % block {gs[-1]} = {in_features % gs[-1]}: compressed-tensors' block-wise "
                f"FP8 fails in forward ('unflatten: Provided sizes [5, 128] don't multiply up to the size of dim 2 "
                f"(576)' on SmolLM2)")
    if isinstance(gs, tuple) or gs <= 0 or gs >= in_features or in_features % gs == 0 or kind not in INT_KINDS:
        return None
    why = {"auto-round": "auto-round has no kernel for it (FakeActQuantLinear, which fails at forward)",
           "compressed-tensors": "compressed-tensors refuses it ('tensor column shape must be divisible by the "
                                 "given group_size')",
           "gptqmodel": "gptqmodel's CPU kernel fails in forward ('_weight_int4pack_mm_cpu: expect K to be "
                        "divisible by qGroupSize'; seen at 4 bits, assumed for the others)",
           "vllm": "vLLM's GPTQ/AWQ linear methods raise 'The input size is not aligned with the quantized weight "
                   "shape'"}.get(consumer)
    return None if why is None else f"in_features {in_features} % group_size {gs} = {in_features % gs}: {why}"


def verdicts(fmt: str, schemes: dict[str, QuantScheme | None],
             in_features: dict[str, int] | None = None) -> dict[str, tuple[bool, str]]:
    """{consumer: (loads, reason)} for a checkpoint of format `fmt` whose layers have `schemes` (None or a 16-bit
    scheme: kept in 16 bits) and, when given, `in_features` per layer (adds `shape_limit`'s per-layer answers).

    A consumer loads the checkpoint when the table says "yes" for every quantized layer's kind and bits and no
    layer's shape is outside its limits; otherwise the reason names the first layer that stops it (unless the
    consumer does not read the format at all).
    """
    from .support import scheme_kind

    rows = [c for c in TABLE if c.format == fmt]
    if not rows:
        return {c: (False, f"format {fmt!r} is not in ar's capability table ({', '.join(formats())})")
                for c in CONSUMERS}
    quantized = {n: s for n, s in schemes.items() if s is not None and s.is_quantized}
    out = {}
    for consumer in CONSUMERS:
        if not quantized:
            loads = rows[0].loads[consumer]
            out[consumer] = (loads == YES, "16-bit layers only" if loads == YES else loads[4:])
            continue
        out[consumer] = (True, "yes")
        for name, s in quantized.items():
            kind = scheme_kind(s)
            row = capability(fmt, kind, s.bits)
            loads = row.loads[consumer] if row else f"no: format {fmt} does not hold {kind} {s.bits}-bit"
            limit = shape_limit(consumer, s, kind, in_features[name]) if in_features and name in in_features else None
            if loads != YES or limit:
                where = "" if loads == _BASE[fmt].get(consumer) else f" (layer {name}, {kind} {s.bits}-bit)"
                out[consumer] = (False, f"{loads[4:]}{where}" if loads != YES else f"layer {name} {limit}")
                break
    return out
