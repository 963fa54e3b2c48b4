"""Input-activation quantization of a QuantLinear: the quantize-dequantize a checkpoint's consumer applies to a
layer's input before the matmul, so our logits are the consumer's.

    int           scale = amax / ((2^b - 1) / 2) per token (group -1), per tensor (0) or per group, codes clamped to
                  [-2^(b-1), 2^(b-1) - 1] (compressed-tensors' rule); asymmetric: scale = (max - min) / (2^b - 1),
                  zero = round(-2^(b-1) - min / scale); static: the stored input_scale (and input_zero_point)
    fp            FP8 E4M3: scale = amax / 448 (dynamic) or the stored input_scale (static); fp8(clamp(x / scale))
    mx_fp(_rceil), mx_int   a dynamic E8M0 scale per 32 inputs (ar_core's MX rules, as auto-round computes them);
                  `native` mx_fp (compressed-tensors): the group max is first rounded up to the next power of two
                  when its mantissa is within 2^-(m+1) of it (m: FP4's mantissa bits, FP6's for 6-bit), so the
                  scale is 2x auto-round's for a group max of 1.75 * 2^k and above (FP4/FP8)
    nv_fp         NVFP4: a dynamic E4M3 scale per 16 inputs, e4m3(gs * amax / 6), over a per-tensor global scale gs:
                  the stored input_global_scale (static global, NVFP4's usual form) or 448 * 6 / amax(x) (dynamic)

Int and FP8 run in the layer's compute dtype, as both consumers do; for NVFP4, `native` specs (compressed-tensors)
take amax / 6 in the compute dtype before the float32 rest, others (auto-round) run in float32 throughout and,
as auto-round does, multiply by reciprocals (x * 1/(scale/gs)), which decides the E2M1 ties bf16 inputs often hit.
auto-round quantizes MXINT4 activations as MXFP4 (its activation quantizer ignores the data type), so we do too.
Specs come from the checkpoint's quantization config (`from_compressed_tensors`, `from_auto_round`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ar_core.errors import CheckpointError
from ar_core.quant import fake_quantize
from ar_core.quant.fp_grids import E2M1, MX_FP_FORMATS, round_to_grid, to_e4m3_ste
from ar_core.quant.mx import E8M0_MAX_EXP, quantize_elements
from ar_core.quant.nvfp import quantize_fp4
from ar_core.scheme import QuantScheme

FP8_MAX = 448.0
NVFP_GLOBAL_MAX = 448.0 * 6.0
MX_TYPES = ("mx_fp", "mx_fp_rceil", "mx_int")


@dataclass(frozen=True)
class ActSpec:
    """How a layer's input is quantized: element type (int, fp, mx_fp, mx_fp_rceil, mx_int, nv_fp), bits, scale
    granularity (-1 per token, 0 per tensor, >0 per group of inputs) and whether the scale is computed per call."""

    data_type: str
    bits: int
    group_size: int
    dynamic: bool
    native: bool = False
    sym: bool = True

    @property
    def stored_scale(self) -> str | None:
        """Name of the checkpoint tensor holding the static scale (None for fully dynamic specs)."""
        if self.dynamic:
            return None
        return "input_global_scale" if self.data_type == "nv_fp" else "input_scale"


def _spec(layer: str, data_type: str, bits: int, group_size: Any, dynamic: bool, sym: Any,
          native: bool = False) -> ActSpec:
    if sym is False and data_type != "int":
        raise CheckpointError(f"layer {layer!r}: asymmetric {data_type} activations are not supported (int ones are)")
    if isinstance(group_size, (list, tuple)) or not isinstance(group_size, int) or group_size < -1:
        raise CheckpointError(f"layer {layer!r}: activation group_size {group_size!r} is not supported "
                              "(-1 per token, 0 per tensor, or a positive group)")
    allowed = {"int": (2, 3, 4, 8), "fp": (8,), "nv_fp": (4,), **{t: (4, 6, 8) for t in MX_TYPES}}
    if data_type not in allowed or bits not in allowed[data_type]:
        raise CheckpointError(f"layer {layer!r}: activation quantization {data_type} {bits}-bit is not supported; "
                              f"known: {allowed}")
    if data_type in MX_TYPES:
        group_size, dynamic = 32, True
    if data_type == "nv_fp":
        group_size = 16
    return ActSpec(data_type, bits, group_size, dynamic, native, sym is not False)


def from_compressed_tensors(args: dict | None, layer: str) -> ActSpec | None:
    """The spec of a compressed-tensors `input_activations` dict (None: activations stay 16-bit)."""
    if not args:
        return None
    bits, kind, strategy = int(args.get("num_bits", 8)), args.get("type", "int"), args.get("strategy", "tensor")
    gs = {"token": -1, "tensor": 0, "group": args.get("group_size"), "tensor_group": args.get("group_size")}
    if strategy not in gs:
        raise CheckpointError(f"layer {layer!r}: activation strategy {strategy!r} is not supported; known: {sorted(gs)}")
    dynamic = args.get("dynamic", False)
    if kind == "int":
        dt = "int"
    elif strategy == "tensor_group" and bits == 4:  # NVFP4: dynamic "local" block scales, static global scale
        return _spec(layer, "nv_fp", 4, 16, dynamic is True, args.get("symmetric"), native=True)
    elif "uint8" in str(args.get("scale_dtype")):
        dt = "mx_fp"
    else:
        dt = "fp"
    return _spec(layer, dt, bits, gs[strategy], dynamic in (True, "local"), args.get("symmetric"), native=True)


def from_auto_round(fields: dict, layer: str) -> ActSpec | None:
    """The spec of auto-round act_* config fields (global, or a layer's extra_config entry merged over them)."""
    bits = int(fields.get("act_bits") or 16)
    if bits >= 16:
        return None
    act_dt = str(fields.get("act_data_type") or fields.get("data_type") or "int")
    dynamic = fields.get("act_dynamic") is not False
    if act_dt.startswith("nv_fp"):
        return _spec(layer, "nv_fp", bits, 16, "static_gs" not in act_dt and dynamic, fields.get("act_sym"))
    dt = re.sub(r"\d+$", "", act_dt)  # "mx_fp4" -> "mx_fp", "fp8" -> "fp"
    dt = "fp" if dt in ("fp", "float") else dt
    dt = "mx_fp" if dt == "mx_int" else dt  # auto-round's MX activation quantizer falls back to mx_fp for mx_int
    gs = fields.get("act_group_size")
    gs = fields.get("group_size", 128) if gs is None else gs
    return _spec(layer, dt, bits, gs, dynamic, fields.get("act_sym"))


def _grouped(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """[T, K] -> [T, G, g] for per-group, [T, 1, K] per token, [1, 1, T*K] per tensor."""
    if group_size == 0:
        return x.reshape(1, 1, -1)
    if group_size == -1:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], -1, group_size)


def _positive(scale: torch.Tensor) -> torch.Tensor:
    return torch.where(scale > 0, scale, torch.full_like(scale, torch.finfo(scale.dtype).eps))


def _int_qdq(x: torch.Tensor, spec: ActSpec, scale: torch.Tensor | None,
             zero: torch.Tensor | None = None) -> torch.Tensor:
    q_min, q_max = -(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1
    g = _grouped(x, spec.group_size)
    if scale is None and spec.sym:
        scale = g.abs().amax(dim=-1, keepdim=True) / ((q_max - q_min) / 2)
    elif scale is None:
        lo = g.amin(dim=-1, keepdim=True).clamp(max=0)
        scale = _positive((g.amax(dim=-1, keepdim=True).clamp(min=0) - lo) / (q_max - q_min))
        zero = torch.round((q_min - lo / scale).clamp(q_min, q_max))
    scale = _positive(scale.to(x.dtype))
    zero = torch.zeros((), dtype=x.dtype, device=x.device) if zero is None else zero.to(x.dtype)
    return ((torch.round(g / scale + zero).clamp(q_min, q_max) - zero) * scale).reshape(x.shape)


def _fp8_qdq(x: torch.Tensor, spec: ActSpec, scale: torch.Tensor | None) -> torch.Tensor:
    g = _grouped(x, spec.group_size)
    if scale is None:
        scale = g.abs().amax(dim=-1, keepdim=True) / FP8_MAX
    scale = _positive(scale.to(x.dtype))
    q = (g / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(x.dtype)
    return (q * scale).reshape(x.shape)


def _reciprocal(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t == 0, torch.zeros_like(t), 1.0 / t)


def _nv_qdq(x: torch.Tensor, spec: ActSpec, stored: torch.Tensor | None) -> torch.Tensor:
    if spec.native:
        g = _grouped(x, 16)
        gs = stored.float().reshape(()) if stored is not None else _dynamic_global_scale(x)
        block = to_e4m3_ste(gs * (g.abs().amax(dim=-1, keepdim=True) / 6.0).float())  # amax / 6 in g's dtype
        return quantize_fp4(g.float(), block, gs)[1].reshape(x.shape)
    # auto-round multiplies by reciprocals; bf16 inputs often land exactly on an E2M1 tie, where that matters
    g = _grouped(x.float(), 16)
    gs = stored.float().reshape(()) if stored is not None else NVFP_GLOBAL_MAX * _reciprocal(x.float().abs().max())
    block = to_e4m3_ste((gs * (g.abs().amax(dim=-1, keepdim=True) * (1.0 / 6.0))).clamp(-FP8_MAX, FP8_MAX))
    inverse = _reciprocal(block * _reciprocal(gs))
    q = round_to_grid((g * inverse).clamp(-E2M1.max_norm, E2M1.max_norm), E2M1)
    return (q * _reciprocal(inverse)).reshape(x.shape)


def _dynamic_global_scale(x: torch.Tensor) -> torch.Tensor:
    amax = x.float().abs().max()
    return torch.where(amax > 0, NVFP_GLOBAL_MAX / amax, torch.ones_like(amax))


def _mx_native_qdq(x: torch.Tensor, spec: ActSpec) -> torch.Tensor:
    fmt = MX_FP_FORMATS[spec.bits]
    g = _grouped(x, 32).float()
    mant, ex = torch.frexp(g.abs().amax(dim=-1, keepdim=True))  # amax = mant * 2^ex, mant in [0.5, 1)
    round_up = mant >= 1.0 - 2.0 ** -((3 if spec.bits == 6 else 1) + 2)
    e = (ex - 1 + round_up.int() - fmt.emax).clamp(-E8M0_MAX_EXP, E8M0_MAX_EXP).float()
    scale = torch.exp2(e)
    return (quantize_elements(g, scale, fmt) * scale).reshape(x.shape)


def quantize_input(x: torch.Tensor, spec: ActSpec, scale: torch.Tensor | None = None,
                   zero: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize-dequantize activations `x` ([..., K]) by `spec`; `scale` is the stored static scale (input_scale,
    or input_global_scale for NVFP4) and `zero` a static int zero point, None for dynamic specs. Returned in x's
    dtype."""
    flat = x.reshape(-1, x.shape[-1])
    ragged = spec.group_size > 0 and spec.data_type in ("int", "fp") and flat.shape[-1] % spec.group_size
    if ragged:  # a partial last group: zeros change no group maximum and are dropped again below
        flat = torch.nn.functional.pad(flat, (0, spec.group_size - ragged))
    scale = None if scale is None else scale.to(flat.device)
    if spec.data_type == "int":
        out = _int_qdq(flat, spec, scale, None if zero is None else zero.to(flat.device))
    elif spec.data_type == "fp":
        out = _fp8_qdq(flat, spec, scale)
    elif spec.data_type == "nv_fp":
        out = _nv_qdq(flat, spec, scale)
    elif spec.native and spec.data_type == "mx_fp":
        out = _mx_native_qdq(flat, spec)
    else:
        with torch.no_grad():
            out = fake_quantize(flat.float(), QuantScheme(bits=spec.bits, group_size=32, data_type=spec.data_type))
    return out[..., :x.shape[-1]].reshape(x.shape).to(x.dtype)


class InputQuant(nn.Module):
    """Applies `quantize_input` with a spec and its static scale (a buffer, so it follows the layer's device)."""

    def __init__(self, spec: ActSpec, scale: torch.Tensor | None = None, zero: torch.Tensor | None = None):
        super().__init__()
        self.spec = spec
        self.register_buffer("zero", None if zero is None else zero.detach().float().reshape(-1).clone(),
                             persistent=False)
        self.register_buffer("scale", None if scale is None else scale.detach().float().reshape(-1).clone(),
                             persistent=False)  # read from the layer's input_scale / input_global_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x quantized and dequantized as the checkpoint's consumer does."""
        return quantize_input(x, self.spec, self.scale, self.zero)

    def extra_repr(self) -> str:
        s = self.spec
        return f"{s.data_type} {s.bits}-bit, group_size={s.group_size}, dynamic={s.dynamic}"

    @classmethod
    def from_tensors(cls, spec: ActSpec, tensors: dict[str, torch.Tensor], layer: str) -> "InputQuant":
        """Build from a layer's checkpoint tensors (CheckpointError when a static spec's scale is missing or is not
        one positive value)."""
        name = spec.stored_scale
        if name is None:
            return cls(spec)
        if name not in tensors:
            raise CheckpointError(f"layer {layer!r}: tensor {name!r} is missing (have {sorted(tensors)}); the config "
                                  f"quantizes its input with a static {spec.data_type} {spec.bits}-bit scale")
        value = tensors[name].float()
        if value.numel() != 1 or not bool(value.reshape(()) > 0) or not torch.isfinite(value).all():
            raise CheckpointError(f"layer {layer!r}: {name} is {value.flatten()[:4].tolist()}, expected one positive "
                                  "finite value (per-tensor static scale)")
        zero = tensors.get("input_zero_point") if spec.data_type == "int" and not spec.sym else None
        return cls(spec, value, zero)
