"""Per-layer tensor layouts: a QuantizedTensor's integer codes and parameters -> the tensors a format stores.

Every function reads the codes carried by the record (never re-derived from dequantized weights) and returns a
{suffix: tensor} dict that replaces `<layer>.weight`. Shapes use in = K, out = N, groups per row = G.
"""

from __future__ import annotations

import torch

from ar_core.errors import ArError, field_error
from ar_core.pack import awq, fp4, fp8, gptq, mlx
from ar_core.pack.bitstream import pack_last, to_int32
from ar_core.qtensor import QuantizedTensor


def _int_zero(qt: QuantizedTensor) -> torch.Tensor:
    """Integer zero points [N, G] (sym records carry 2^(bits-1))."""
    if qt.zero is None:
        raise field_error(ArError, "zero", None, f"an int32 zero point for data_type {qt.scheme.data_type!r}")
    return qt.zero.to(torch.int64)


def gptq_tensors(qt: QuantizedTensor, zero_offset: int, g_idx: bool = False) -> dict[str, torch.Tensor]:
    """GPTQ order: qweight int32 [K*b/32, N], qzeros int32 [G, N*b/32] (zero - zero_offset), scales fp16 [G, N].

    zero_offset 1 is the GPTQ v1 convention (auto_gptq, auto_round:auto_gptq), 0 the raw zeros of v2 (auto_round).
    """
    bits = qt.scheme.bits
    zeros = _int_zero(qt) - zero_offset
    if zeros.numel() and int(zeros.min()) < 0:
        raise field_error(ArError, "zero", int(zeros.min()) + zero_offset,
                          f"zero points >= {zero_offset} for GPTQ v1 storage (zero - 1); use the auto_round format")
    out = {"qweight": gptq.pack_rows(qt.codes.t(), bits), "qzeros": gptq.pack_cols(zeros.t(), bits),
           "scales": qt.scale.t().to(torch.float16)}
    if g_idx:
        gs = qt.scheme.effective_group_size(qt.in_features)
        out["g_idx"] = (torch.arange(qt.in_features) // gs).to(torch.int32)
    return out


def awq_tensors(qt: QuantizedTensor) -> dict[str, torch.Tensor]:
    """AWQ GEMM: qweight int32 [K, N/8], qzeros int32 [G, N/8] (raw zeros), scales fp16 [G, N]."""
    return {"qweight": awq.pack(qt.codes.t()), "qzeros": awq.pack(_int_zero(qt).t()),
            "scales": qt.scale.t().to(torch.float16)}


def mlx_tensors(qt: QuantizedTensor) -> dict[str, torch.Tensor]:
    """MLX affine: weight uint32 [N, K*b/32], scales fp16 [N, G], biases fp16 [N, G] with w = scales*q + biases."""
    scale = qt.scale.to(torch.float16)
    biases = (-scale.float() * _int_zero(qt).float()).to(torch.float16)
    return {"weight": mlx.pack(qt.codes, qt.scheme.bits), "scales": scale, "biases": biases}


def ct_int_tensors(qt: QuantizedTensor, scale_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """compressed-tensors pack-quantized: weight_packed int32 [N, ceil(K*b/32)] (dense LSB-first stream of the
    unsigned codes, i.e. signed q + 2^(b-1)), weight_scale [N, G], weight_shape [2], and for asym
    weight_zero_point int32 [ceil(N*b/32), G] (the zeros packed along N the same way)."""
    bits = qt.scheme.bits
    out = {"weight_packed": to_int32(pack_last(qt.codes, bits)), "weight_scale": qt.scale.to(scale_dtype),
           "weight_shape": torch.tensor(list(qt.shape), dtype=torch.int64)}
    if not qt.scheme.sym:
        out["weight_zero_point"] = to_int32(pack_last(_int_zero(qt).t(), bits)).t().contiguous()
    return out


def ct_int8_tensors(qt: QuantizedTensor, scale_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """compressed-tensors int-quantized (W8A8): weight int8 [N, K] = q - zero, weight_scale [N, G]."""
    gs = qt.scheme.effective_group_size(qt.in_features)
    q = qt.codes.to(torch.int64) - _int_zero(qt).repeat_interleave(gs, dim=1)[:, :qt.in_features]
    return {"weight": q.to(torch.int8), "weight_scale": qt.scale.to(scale_dtype)}


def mx_tensors(qt: QuantizedTensor) -> dict[str, torch.Tensor]:
    """MX (compressed-tensors / auto_round): FP4 or INT4 codes two per byte as weight_packed uint8 [N, K/2], or FP8
    elements as weight float8 [N, K]; weight_scale uint8 E8M0 [N, K/32]."""
    scale = fp4.e8m0_encode(qt.scale)
    if qt.scheme.bits == 4:
        return {"weight_packed": fp4.pack_nibbles(qt.codes), "weight_scale": scale}
    if qt.scheme.bits == 8:
        return {"weight": fp8.to_float8(qt.codes.to(torch.uint8)), "weight_scale": scale}
    raise field_error(ArError, "bits", qt.scheme.bits, "4 or 8 for stored MX layers")


def nvfp4_tensors(qt: QuantizedTensor, input_global_scale: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """NVFP4: weight_packed uint8 [N, K/2], weight_scale float8 [N, K/16], weight_global_scale fp32 [1],
    input_global_scale fp32 [1] (when activations are quantized)."""
    out = {"weight_packed": fp4.pack_nibbles(qt.codes), "weight_scale": fp8.encode_e4m3_scale(qt.scale),
           "weight_global_scale": qt.extras["global_scale"].reshape(1).to(torch.float32)}
    if input_global_scale is not None:
        out["input_global_scale"] = input_global_scale.reshape(1).to(torch.float32)
    return out


def fp8_tensors(qt: QuantizedTensor, scale_dtype: torch.dtype, scale_name: str = "weight_scale",
                scale_shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """FP8: weight float8_e4m3fn [N, K] and its dequant multiplier (per tensor, channel or 128x128 block)."""
    scale = qt.scale.to(scale_dtype)
    if scale_shape is not None:
        scale = scale.reshape(scale_shape)
    return {"weight": fp8.to_float8(qt.codes), scale_name: scale}


def static_input_scale(qt: QuantizedTensor, divisor: float) -> torch.Tensor:
    """act_max / divisor from the record's calibrated `extras['act_max']` (static activation schemes)."""
    if "act_max" not in qt.extras:
        raise field_error(ArError, "extras['act_max']", None,
                          "a calibrated activation maximum for static activation quantization (run calibration)")
    return torch.as_tensor(qt.extras["act_max"], dtype=torch.float32).reshape(1) / divisor
