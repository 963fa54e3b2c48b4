"""Integer packings: GPTQ order (zero-1 and raw zeros), AWQ GEMM, MLX affine, compressed-tensors pack-/int-quantized.

    gptq, gptq_v2   qweight int32 [K*b/32, N], qzeros int32 [G, N*b/32], scales fp16 [G, N], optional g_idx int32
                    [K]; "gptq" stores zero-1 (v1: auto_gptq, auto_round:auto_gptq), "gptq_v2" raw zeros
    awq             qweight int32 [K, N/8], qzeros int32 [G, N/8] (AWQ nibble interleave, raw zeros), scales [G, N]
    mlx             weight uint32 [N, K*b/32], scales and biases fp16 [N, G]; w = scales * q + biases
    pack_quantized  weight_packed int32 [N, ceil(K*b/32)] (LSB-first stream of the unsigned codes), weight_scale
                    [N, G], weight_shape [2], asym weight_zero_point int32 [ceil(N*b/32), G]
    int_quantized   weight int8 [N, K] = q - zero, weight_scale [N, G], optional weight_zero_point
"""

from __future__ import annotations

import torch

from ..errors import ArError, CheckpointError, field_error
from ..pack import awq, gptq, mlx
from ..pack.bitstream import pack_last, packed_words, to_int32, unpack_last
from ..qtensor import QuantizedTensor
from ..registry import get_data_type
from ..scheme import QuantScheme
from .base import Layout, Shapes, describe, expect, group_count, int_zero, per_row_groups, register_layout

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _is_int(scheme: QuantScheme) -> bool:
    """Whether readers load the scheme's data type as int ((code - zero) * scale; e.g. a plugin's int_pow2)."""
    return get_data_type(scheme.data_type).stored_name() == "int"


def _int_refusal(scheme: QuantScheme, bits: tuple[int, ...]) -> str | None:
    if not _is_int(scheme) or scheme.bits not in bits:
        return f"holds int {list(bits)}-bit"
    return None


def _record(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, scheme: QuantScheme, in_features: int,
            out_features: int) -> QuantizedTensor:
    return QuantizedTensor(codes=codes.contiguous().to(torch.uint8), scale=scale.float().contiguous(),
                           zero=zero.contiguous().to(torch.int32), scheme=scheme, shape=(out_features, in_features))


class GPTQLayout(Layout):
    """GPTQ order; `zero_offset` 1 stores zero-1 (v1), 0 the raw zeros (v2). W[k, n] = scales[g(k), n] *
    (q[k, n] - zero[g(k), n]) with g(k) = g_idx[k] or k // group."""

    stores = "qweight"

    def __init__(self, name: str, zero_offset: int):
        self.name, self.zero_offset = name, zero_offset

    def refusal(self, scheme, in_features, out_features):
        return _int_refusal(scheme, gptq.BITS)

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        bits, groups = scheme.bits, group_count(scheme, in_features)
        return {"qweight": ((packed_words(in_features, bits), out_features), (torch.int32,)),
                "qzeros": ((groups, packed_words(out_features, bits)), (torch.int32,)),
                "scales": ((groups, out_features), _FLOATS)}

    def read(self, tensors, scheme, in_features, out_features, layer="?"):
        """The checked tensors, with `g_idx` when stored (its groups must lie in [0, G))."""
        out = super().read(tensors, scheme, in_features, out_features, layer)
        if tensors.get("g_idx") is not None:
            groups, what = group_count(scheme, in_features), describe(scheme)
            g_idx = expect(layer, tensors, "g_idx", (in_features,), None, what).to(torch.int32)
            if g_idx.numel() and (int(g_idx.min()) < 0 or int(g_idx.max()) >= groups):
                raise CheckpointError(f"layer {layer!r}: g_idx values lie outside [0, {groups}) groups{what}")
            out["g_idx"] = g_idx
        return out

    def decode_zeros(self, stored: torch.Tensor, bits: int) -> torch.Tensor:
        """True zero points from the unpacked stored ones (v1 adds the 1 back within the bit width)."""
        return (stored + 1) & ((1 << bits) - 1) if self.zero_offset else stored

    def to_tensors(self, qt: QuantizedTensor, g_idx: bool = False) -> dict[str, torch.Tensor]:
        """qweight, qzeros (zero - zero_offset; a zero below the offset is refused), scales fp16 and, with `g_idx`,
        the plain k // group index."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        bits, out_features = qt.scheme.bits, qt.out_features
        zeros = per_row_groups(int_zero(qt), out_features) - self.zero_offset
        if zeros.numel() and int(zeros.min()) < 0:
            raise field_error(ArError, "zero", int(zeros.min()) + self.zero_offset,
                              f"zero points >= {self.zero_offset} for GPTQ v1 storage (zero - 1); use the "
                              "auto_round format")
        out = {"qweight": gptq.pack_rows(qt.codes.t(), bits), "qzeros": gptq.pack_cols(zeros.t(), bits),
               "scales": per_row_groups(qt.scale, out_features).t().to(torch.float16)}
        if g_idx:
            gs = qt.scheme.effective_group_size(qt.in_features)
            out["g_idx"] = (torch.arange(qt.in_features) // gs).to(torch.int32)
        return out

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        """The record; an act-order g_idx (rows reordered) has no per-group record and raises CheckpointError."""
        t = self.read(tensors, scheme, in_features, out_features, layer)
        if "g_idx" in t:
            plain = torch.arange(in_features) // scheme.effective_group_size(in_features)
            if not torch.equal(t["g_idx"].to(torch.int64).cpu(), plain):
                raise CheckpointError(f"layer {layer!r}: g_idx reorders the input rows (act-order / desc_act); "
                                      "such layers cannot be stored as per-group records")
        bits = scheme.bits
        codes = gptq.unpack_rows(t["qweight"], bits, in_features)
        zeros = self.decode_zeros(gptq.unpack_cols(t["qzeros"], bits, out_features), bits)
        return _record(codes.t(), t["scales"].t(), zeros.t(), scheme, in_features, out_features)


class AWQLayout(Layout):
    """AWQ GEMM, 4-bit, raw zeros; N must be a multiple of 8."""

    name, stores = "awq", "qweight"

    def refusal(self, scheme, in_features, out_features):
        if not _is_int(scheme) or scheme.bits != 4:
            return "holds int 4-bit only"
        return None if out_features % 8 == 0 else f"needs out_features % 8 == 0 (got {out_features})"

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        groups = group_count(scheme, in_features)
        return {"qweight": ((in_features, out_features // 8), (torch.int32,)),
                "qzeros": ((groups, out_features // 8), (torch.int32,)), "scales": ((groups, out_features), None)}

    def to_tensors(self, qt: QuantizedTensor) -> dict[str, torch.Tensor]:
        """qweight and qzeros interleaved int32 words, scales fp16 [G, N]."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        n = qt.out_features
        return {"qweight": awq.pack(qt.codes.t()), "qzeros": awq.pack(per_row_groups(int_zero(qt), n).t()),
                "scales": per_row_groups(qt.scale, n).t().to(torch.float16)}

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        t = self.read(tensors, scheme, in_features, out_features, layer)
        return _record(awq.unpack(t["qweight"]).t(), t["scales"].t(), awq.unpack(t["qzeros"]).t(), scheme,
                       in_features, out_features)


class MLXLayout(Layout):
    """MLX affine: the group must divide K; biases = -scale * zero (from the fp16 scale)."""

    name, stores = "mlx", "mlx"

    def refusal(self, scheme, in_features, out_features):
        why = _int_refusal(scheme, mlx.BITS)
        if why is None and in_features % scheme.effective_group_size(in_features):
            return f"needs group_size dividing in_features={in_features}"
        return why

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        groups = group_count(scheme, in_features)
        return {"weight": ((out_features, packed_words(in_features, scheme.bits)), (torch.uint32, torch.int32)),
                "scales": ((out_features, groups), None), "biases": ((out_features, groups), None)}

    def to_tensors(self, qt: QuantizedTensor) -> dict[str, torch.Tensor]:
        """weight uint32 words, scales fp16, biases fp16 = -scales * zero."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        scale = per_row_groups(qt.scale, qt.out_features).to(torch.float16)
        biases = (-scale.float() * per_row_groups(int_zero(qt), qt.out_features).float()).to(torch.float16)
        return {"weight": mlx.pack(qt.codes, qt.scheme.bits), "scales": scale, "biases": biases}

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        """The record; zero points are recovered as round(-biases / scales) (0 where a scale is 0)."""
        t = self.read(tensors, scheme, in_features, out_features, layer)
        codes = mlx.unpack(t["weight"].view(torch.uint32), scheme.bits, in_features)
        scale, biases = t["scales"].float(), t["biases"].float()
        zero = torch.where(scale == 0, 0.0, torch.round(-biases / scale))
        return _record(codes, scale, zero, scheme, in_features, out_features)


def _unpack_dense(words: torch.Tensor, bits: int, length: int) -> torch.Tensor:
    pad = -words.shape[-1] % bits if 32 % bits else 0
    if pad:
        words = torch.nn.functional.pad(words, (0, pad))
    return unpack_last(words, bits, length)


def _ct_scale(tensors: dict, scheme: QuantScheme, in_features: int, out_features: int, layer: str) -> torch.Tensor:
    what = describe(scheme)
    groups = 1 if scheme.group_size in (0, -1) else group_count(scheme, in_features)
    scale = expect(layer, tensors, "weight_scale", None, None, what).float()
    if scheme.group_size == 0:
        return scale.reshape(1, 1)
    if tuple(scale.shape) != (out_features, groups):
        raise CheckpointError(f"layer {layer!r}: weight_scale has shape {list(scale.shape)} but the quantization "
                              f"config ({what.strip('; ')}) implies {[out_features, groups]}")
    return scale


class PackQuantizedLayout(Layout):
    """compressed-tensors pack-quantized int weights (dense LSB-first streams, unsigned codes)."""

    name, stores = "pack_quantized", "weight_packed"

    def refusal(self, scheme, in_features, out_features):
        return None if _is_int(scheme) and 1 <= scheme.bits <= 8 else "holds int 1..8-bit"

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        return {"weight_packed": ((out_features, -(-in_features * scheme.bits // 32)), (torch.int32,))}

    def to_tensors(self, qt: QuantizedTensor, scale_dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """weight_packed, weight_scale in `scale_dtype`, weight_shape and, for asym, weight_zero_point."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        bits = qt.scheme.bits
        out = {"weight_packed": to_int32(pack_last(qt.codes, bits)), "weight_scale": qt.scale.to(scale_dtype),
               "weight_shape": torch.tensor(list(qt.shape), dtype=torch.int64)}
        if not qt.scheme.sym:
            out["weight_zero_point"] = to_int32(pack_last(int_zero(qt).t(), bits)).t().contiguous()
        return out

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        packed = self.read(tensors, scheme, in_features, out_features, layer)["weight_packed"]
        bits, what = scheme.bits, describe(scheme)
        if "weight_shape" in tensors and [int(v) for v in tensors["weight_shape"]] != [out_features, in_features]:
            raise CheckpointError(f"layer {layer!r}: weight_shape {tensors['weight_shape'].tolist()} != model's "
                                  f"[{out_features}, {in_features}]")
        scale = _ct_scale(tensors, scheme, in_features, out_features, layer)
        if scheme.sym:
            zero = torch.full(scale.shape, 1 << (bits - 1), dtype=torch.int32)
        else:
            zp = expect(layer, tensors, "weight_zero_point", None, (torch.int32,), what)
            zero = _unpack_dense(zp.t(), bits, scale.shape[0]).t().to(torch.int32)
        codes = _unpack_dense(packed, bits, in_features).to(torch.uint8)
        return QuantizedTensor(codes=codes, scale=scale, zero=zero, scheme=scheme, shape=(out_features, in_features))


class IntQuantizedLayout(Layout):
    """compressed-tensors int-quantized (W8A8): weight int8 = q - zero."""

    name, stores = "int_quantized", "int8"

    def refusal(self, scheme, in_features, out_features):
        return None if _is_int(scheme) and 1 <= scheme.bits <= 8 else "holds int 1..8-bit"

    def shapes(self, scheme, in_features, out_features) -> Shapes:
        return {"weight": ((out_features, in_features), (torch.int8,))}

    def to_tensors(self, qt: QuantizedTensor, scale_dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """weight int8 (codes - zero), weight_scale in `scale_dtype`."""
        self.check_scheme(qt.scheme, qt.in_features, qt.out_features)
        gs = qt.scheme.effective_group_size(qt.in_features)
        q = qt.codes.to(torch.int64) - int_zero(qt).repeat_interleave(gs, dim=1)[:, :qt.in_features]
        return {"weight": q.to(torch.int8), "weight_scale": qt.scale.to(scale_dtype)}

    def from_tensors(self, tensors, scheme, in_features, out_features, layer="?"):
        """8-bit codes (weight + 128) with zero 128 (+ the stored zero point, which makes the record asym)."""
        weight = self.read(tensors, scheme, in_features, out_features, layer)["weight"]
        scale = _ct_scale(tensors, scheme, in_features, out_features, layer)
        zero = torch.full(scale.shape, 128, dtype=torch.int32)
        if "weight_zero_point" in tensors:
            zero = zero + tensors["weight_zero_point"].to(torch.int32).reshape(scale.shape)
        codes = (weight.to(torch.int32) + 128).to(torch.uint8)
        container = scheme.replace(bits=8, sym=scheme.sym and "weight_zero_point" not in tensors)
        return QuantizedTensor(codes=codes, scale=scale, zero=zero, scheme=container,
                               shape=(out_features, in_features))


GPTQ = register_layout(GPTQLayout("gptq", zero_offset=1))
GPTQ_V2 = register_layout(GPTQLayout("gptq_v2", zero_offset=0))
AWQ = register_layout(AWQLayout())
MLX = register_layout(MLXLayout())
PACK_QUANTIZED = register_layout(PackQuantizedLayout())
INT_QUANTIZED = register_layout(IntQuantizedLayout())
