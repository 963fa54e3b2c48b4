"""`auto_round` format (quant_method "auto-round"), loaded by transformers through the auto-round package.

Packing by scheme family (one family per checkpoint; bits may differ per layer):
    int sym                         auto_round:auto_gptq    GPTQ order, qzeros = zero - 1
    int asym, every layer 4-bit     auto_round:auto_awq     AWQ GEMM layout, raw zeros (needs K % G == 0, N % 8 == 0)
    other int asym                  auto_round              GPTQ order, raw zeros
    MXFP4/8, NVFP4                  auto_round:llm_compressor (compressed-tensors tensors)
    MXINT4                          auto_round              weight_packed nibbles + E8M0 weight_scale
    FP8 static activations          auto_round:fp8_static   fp8 weight, weight_scale [N], input_scale [1]
    FP8 weight-only                 (no packing_format)     fp8 weight, weight_scale [1]
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.errors import SchemeError, field_error
from ar_core.layouts import get_layout
from ar_core.layouts.floats import float_layout
from ar_core.qtensor import QuantizedTensor

from .act_scales import static_input_scale
from .checkpoint import SaveContext, Writer, require
from .qconfig import blocks, differing_layers, global_scheme, run_knobs, scheme_entry
from .support import scheme_kind

AUTOROUND_VERSION = "0.16.1"
FAMILY = {"int_sym": "int", "int_asym": "int", "mx_fp": "mx_fp", "mx_int": "mx_int", "nv_fp": "nv_fp",
          "fp8_static": "fp8_static", "fp8_weight": "fp8_weight"}


def _records(quantized: dict[str, QuantizedTensor]) -> list[QuantizedTensor]:
    return [qt for qt in quantized.values() if qt.scheme.is_quantized]


def _awq_fits(qt: QuantizedTensor) -> bool:
    gs = qt.scheme.effective_group_size(qt.in_features)
    return qt.scheme.bits == 4 and qt.in_features % gs == 0 and qt.out_features % 8 == 0


def packing_format(quantized: dict[str, QuantizedTensor]) -> str | None:
    """The `packing_format` AutoRound's loader dispatches on, for these records."""
    recs = _records(quantized)
    family = FAMILY[scheme_kind(recs[0].scheme)]
    if family == "int":
        if all(qt.scheme.sym for qt in recs):
            return "auto_round:auto_gptq"
        return "auto_round:auto_awq" if all(_awq_fits(qt) for qt in recs) else "auto_round"
    return {"mx_fp": "auto_round:llm_compressor", "nv_fp": "auto_round:llm_compressor", "mx_int": "auto_round",
            "fp8_static": "auto_round:fp8_static", "fp8_weight": None}[family]


class AutoRoundFormat(Writer):
    """Writer of the `auto_round` format."""

    name = "auto_round"

    def check(self, schemes) -> None:
        """Every scheme must be storable, and all quantized layers must share one storage family."""
        super().check(schemes)
        families = {FAMILY[scheme_kind(s)] for s in schemes.values() if s.is_quantized}
        if len(families) > 1:
            raise field_error(SchemeError, "schemes", sorted(families),
                              "one family per auto_round checkpoint (int bits may differ); use 'fake' for mixes")

    def save_dtype(self, quantized):
        recs = _records(quantized)
        if any(qt.scheme.quantizes_activations for qt in recs):
            return torch.bfloat16
        if packing_format(quantized) == "auto_round:auto_awq":
            return torch.float16
        return None

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: SaveContext) -> dict[str, torch.Tensor]:
        fmt = packing_format(ctx.quantized)
        kind = scheme_kind(qt.scheme)
        if fmt == "auto_round:auto_gptq":
            return get_layout("gptq").to_tensors(qt)
        if fmt == "auto_round:auto_awq":
            return get_layout("awq").to_tensors(qt)
        if kind in ("int_sym", "int_asym"):
            return get_layout("gptq_v2").to_tensors(qt)
        if kind in ("mx_fp", "mx_int"):
            return float_layout(qt.scheme).to_tensors(qt)
        if kind == "nv_fp":
            act = static_input_scale(qt, 1.0) if qt.scheme.quantizes_activations else None
            return get_layout("nvfp4").to_tensors(qt, None if act is None else 448.0 * 6.0 / act)
        if kind == "fp8_static":
            require(qt.scale.numel() in (1, qt.out_features), "group_size", qt.scheme.group_size,
                    "-1 (per channel) or 0 (per tensor) for FP8 in auto_round")
            out = get_layout("fp8").to_tensors(qt, ctx.dtype, scale_shape=(qt.scale.numel(),))
            out["input_scale"] = static_input_scale(qt, 448.0).to(ctx.dtype)
            return out
        require(qt.scale.numel() == 1, "group_size", qt.scheme.group_size, "0 (per tensor) for FP8 weight-only")
        return get_layout("fp8").to_tensors(qt, ctx.dtype, scale_shape=(1,))

    def check_layer(self, name: str, qt: QuantizedTensor) -> None:
        if scheme_kind(qt.scheme) in ("mx_fp", "mx_int", "nv_fp"):
            require(qt.in_features % qt.scheme.group_size == 0, f"in_features of {name}", qt.in_features,
                    f"a multiple of group_size {qt.scheme.group_size} for MX/NV FP layers")

    def quant_config(self, ctx: SaveContext) -> dict[str, Any]:
        kind = scheme_kind(global_scheme(ctx))
        fp8 = {"fmt": "e4m3", "activation_scheme": "static" if kind == "fp8_static" else "dynamic"} \
            if kind.startswith("fp8") else {}
        return auto_round_config(ctx, packing_format(ctx.quantized), **fp8)


def auto_round_config(ctx: SaveContext, packing: str | None, **fields: Any) -> dict[str, Any]:
    """The `quant_method: auto-round` quantization_config: global scheme, packing_format, block list, the `fields`
    given, extra_config for layers that differ, and the run's tuning knobs (None values dropped)."""
    qc: dict[str, Any] = {**scheme_entry(global_scheme(ctx)), "quant_method": "auto-round",
                          "autoround_version": AUTOROUND_VERSION, "packing_format": packing,
                          "block_name_to_quantize": ",".join(blocks(ctx)) or None, **fields}
    extra = differing_layers(ctx)
    if extra:
        qc["extra_config"] = extra
    qc.update(run_knobs(ctx))
    return {k: v for k, v in qc.items() if v is not None}


FORMAT = AutoRoundFormat()
