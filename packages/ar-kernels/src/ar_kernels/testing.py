"""Builders of random QuantizedTensor records per data type and an independent float64 reference decode.

Used by this package's tests and usable by exporter tests: `reference_weight(qt)` decodes codes with plain float64
arithmetic (no packing codec involved), so a backend that matches it reads its layout correctly.
"""

from __future__ import annotations

import torch

from ar_core.quant import quantize
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_int_qt(out_features: int, in_features: int, bits: int = 4, group_size=32, sym: bool = True,
                  seed: int = 0) -> QuantizedTensor:
    """RTN-quantized random weight (ar_core int math: full-range sym or asym)."""
    w = torch.randn(out_features, in_features, generator=_gen(seed)) * 0.05
    return quantize(w, QuantScheme(bits=bits, group_size=group_size, sym=sym))


def random_mx_qt(out_features: int, in_features: int, bits: int = 4, seed: int = 0) -> QuantizedTensor:
    """MXFP4 (E2M1 codes) or MXFP8 (E4M3 bit patterns) codes with power-of-two scales per 32 inputs."""
    g = _gen(seed)
    if bits == 4:
        codes = torch.randint(0, 16, (out_features, in_features), generator=g).to(torch.uint8)
    else:
        vals = (torch.randn(out_features, in_features, generator=g) * 50).clamp(-448, 448)
        codes = vals.to(torch.float8_e4m3fn).view(torch.uint8)
    groups = -(-in_features // 32)
    scale = torch.exp2(torch.randint(-10, -3, (out_features, groups), generator=g).float())
    return QuantizedTensor(codes=codes, scale=scale, zero=None, scheme=QuantScheme(bits=bits, group_size=32,
                           data_type="mx_fp"), shape=(out_features, in_features))


def random_nvfp4_qt(out_features: int, in_features: int, seed: int = 0) -> QuantizedTensor:
    """NVFP4 codes, E4M3-grid block scales per 16 inputs and a global scale."""
    g = _gen(seed)
    codes = torch.randint(0, 16, (out_features, in_features), generator=g).to(torch.uint8)
    raw = torch.rand(out_features, -(-in_features // 16), generator=g) * 400 + 1
    scale = raw.to(torch.float8_e4m3fn).float()
    return QuantizedTensor(codes=codes, scale=scale, zero=None, scheme=QuantScheme(bits=4, group_size=16,
                           data_type="nv_fp"), shape=(out_features, in_features),
                           extras={"global_scale": torch.tensor(448.0 * 6 / 0.3)})


def random_fp8_qt(out_features: int, in_features: int, group_size=-1, seed: int = 0) -> QuantizedTensor:
    """FP8 codes with a per-tensor (0), per-channel (-1), per-group (g) or per-block ((m, n)) scale."""
    g = _gen(seed)
    codes = (torch.randn(out_features, in_features, generator=g) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    if group_size == 0:
        shape = (1, 1)
    elif group_size == -1:
        shape = (out_features, 1)
    elif isinstance(group_size, tuple):
        shape = (-(-out_features // group_size[0]), -(-in_features // group_size[1]))
    else:
        shape = (out_features, -(-in_features // group_size))
    scale = torch.rand(shape, generator=g) * 1e-3 + 1e-4
    return QuantizedTensor(codes=codes, scale=scale, zero=None, scheme=QuantScheme(bits=8, group_size=group_size,
                           data_type="fp"), shape=(out_features, in_features))


def _per_input(t: torch.Tensor, group: int, in_features: int) -> torch.Tensor:
    return t.repeat_interleave(group, dim=1)[:, :in_features]


def reference_weight(qt: QuantizedTensor) -> torch.Tensor:
    """Float64 [out, in] weight of a record, decoded with plain arithmetic per the QuantizedTensor conventions."""
    s, (out, k) = qt.scheme, qt.shape
    scale = qt.scale.double()
    if s.data_type == "int":
        gs = s.effective_group_size(k)
        scale = scale.expand(out, -1)
        zero = qt.zero.double().expand(out, -1)
        return _per_input(scale, gs, k) * (qt.codes.double() - _per_input(zero, gs, k))
    if s.data_type in ("mx_fp", "nv_fp") and s.bits == 4:
        c = qt.codes.long()
        vals = torch.where(c >= 8, -_E2M1[c & 7], _E2M1[c & 7])
        w = vals * _per_input(scale, s.group_size, k)
        if s.data_type == "nv_fp":
            w = w / float(qt.extras["global_scale"])
        return w
    codes = qt.codes.view(torch.float8_e4m3fn) if qt.codes.dtype == torch.uint8 else qt.codes
    vals = codes.double()
    if s.data_type == "mx_fp":
        return vals * _per_input(scale, 32, k)
    if scale.numel() == 1:
        return vals * scale.reshape(())
    if isinstance(s.group_size, tuple):
        m, n = s.group_size
        return vals * scale.repeat_interleave(m, 0).repeat_interleave(n, 1)[:out, :k]
    if s.group_size == -1:
        return vals * scale
    return vals * _per_input(scale, s.group_size, k)
