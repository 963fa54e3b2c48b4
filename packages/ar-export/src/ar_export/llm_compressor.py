"""`llm_compressor` format (quant_method "compressed-tensors"), loaded by transformers through compressed-tensors.

One `config_group` per distinct scheme (targets ["Linear"] when there is only one, else the layer names), 16-bit
Linear layers in `ignore`, and a compression format per group:
    int weight-only       pack-quantized         weight_packed int32, weight_scale, weight_shape (+ weight_zero_point)
    int W8A8              int-quantized          weight int8, weight_scale
    MXFP4 / MXFP8         mxfp4-pack-quantized / mxfp8-quantized   (E8M0 uint8 weight_scale)
    NVFP4                 nvfp4-pack-quantized   weight_packed, weight_scale e4m3, weight/input_global_scale
    FP8                   float-quantized        weight fp8, weight_scale (+ input_scale for static activations)
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.layouts import get_layout
from ar_core.layouts.floats import float_layout
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

from .act_scales import static_input_scale
from .checkpoint import SaveContext, Writer, require
from .qconfig import layer_schemes, quantized_names
from .support import scheme_kind

SCALE_TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def compression_format(s: QuantScheme) -> str:
    """The compressed-tensors format name for layers quantized with `s`."""
    kind = scheme_kind(s)
    if kind in ("int_sym", "int_asym"):
        return "pack-quantized"
    if kind == "int_w8a8":
        return "int-quantized"
    if kind == "mx_fp":
        return "mxfp4-pack-quantized" if s.bits == 4 else "mxfp8-quantized"
    if kind == "nv_fp":
        return "nvfp4-pack-quantized"
    return "float-quantized"


def _strategy(gs) -> dict[str, Any]:
    if isinstance(gs, tuple):
        return {"strategy": "block", "block_structure": list(gs), "group_size": None}
    if gs == -1:
        return {"strategy": "channel", "group_size": None}
    if gs == 0:
        return {"strategy": "tensor", "group_size": None}
    return {"strategy": "group", "group_size": gs}


def weight_args(s: QuantScheme) -> dict[str, Any]:
    """compressed-tensors QuantizationArgs (as a dict) of the weights of scheme `s`."""
    kind = scheme_kind(s)
    args = {"num_bits": s.bits, "type": "int" if kind.startswith("int") else "float", "symmetric": s.sym,
            "dynamic": False, **_strategy(s.group_size)}
    if kind == "mx_fp":
        args["scale_dtype"] = "torch.uint8"
    if kind == "nv_fp":
        args.update(strategy="tensor_group", scale_dtype="torch.float8_e4m3fn")
    return args


def input_args(s: QuantScheme) -> dict[str, Any] | None:
    """QuantizationArgs of the input activations of `s` (None for weight-only schemes)."""
    if not s.quantizes_activations:
        return None
    kind = scheme_kind(s)
    gs = s.act_group_size if s.act_group_size is not None else s.group_size
    args = {"num_bits": s.act_bits, "type": "int" if kind.startswith("int") else "float",
            "symmetric": True if s.act_sym is None else s.act_sym, "dynamic": bool(s.act_dynamic), **_strategy(gs)}
    if gs == -1:
        args["strategy"] = "token"
    if kind == "mx_fp":
        args["scale_dtype"] = "torch.uint8"
    if kind == "nv_fp":
        args.update(strategy="tensor_group", dynamic="local", observer="static_minmax",
                    scale_dtype="torch.float8_e4m3fn")
    return args


class LlmCompressorFormat(Writer):
    """Writer of the `llm_compressor` (compressed-tensors) format."""

    name = "llm_compressor"

    def save_dtype(self, quantized):
        return torch.bfloat16 if any(qt.scheme.quantizes_activations for qt in quantized.values()) else None

    def check_layer(self, name: str, qt: QuantizedTensor) -> None:
        if scheme_kind(qt.scheme) in ("mx_fp", "nv_fp"):
            require(qt.in_features % qt.scheme.group_size == 0, f"in_features of {name}", qt.in_features,
                    f"a multiple of group_size {qt.scheme.group_size} for MX/NV FP layers")

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: SaveContext) -> dict[str, torch.Tensor]:
        kind = scheme_kind(qt.scheme)
        if kind in ("int_sym", "int_asym"):
            return get_layout("pack_quantized").to_tensors(qt, SCALE_TORCH[qt.scheme.scale_dtype])
        if kind == "int_w8a8":
            return get_layout("int_quantized").to_tensors(qt, SCALE_TORCH[qt.scheme.scale_dtype])
        if kind == "mx_fp":
            return float_layout(qt.scheme).to_tensors(qt)
        if kind == "nv_fp":
            act = static_input_scale(qt, 1.0) if qt.scheme.quantizes_activations else None
            return get_layout("nvfp4").to_tensors(qt, None if act is None else 448.0 * 6.0 / act)
        shape = (1,) if qt.scale.numel() == 1 else None
        out = get_layout("fp8").to_tensors(qt, ctx.dtype, scale_shape=shape)
        if kind == "fp8_static":
            out["input_scale"] = static_input_scale(qt, 448.0).to(ctx.dtype)
        return out

    def quant_config(self, ctx: SaveContext) -> dict[str, Any]:
        names = quantized_names(ctx)
        groups: dict[QuantScheme, list[str]] = {}
        for n in names:
            groups.setdefault(ctx.quantized[n].scheme, []).append(n)
        formats = {compression_format(s) for s in groups}
        config_groups = {}
        for i, (s, members) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
            config_groups[f"group_{i}"] = {"targets": ["Linear"] if len(groups) == 1 else members,
                                           "weights": weight_args(s), "input_activations": input_args(s),
                                           "output_activations": None, "format": compression_format(s)}
        ignore = [n for n, s in layer_schemes(ctx).items() if not s.is_quantized]
        return {"quant_method": "compressed-tensors", "provider": "auto-round", "config_groups": config_groups,
                "format": formats.pop() if len(formats) == 1 else "mixed-precision", "ignore": ignore,
                "quantization_status": "compressed", "kv_cache_scheme": None, "global_compression_ratio": None,
                "moe_sparsity_config": None}


FORMAT = LlmCompressorFormat()
