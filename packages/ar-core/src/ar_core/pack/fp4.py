"""FP4 storage (MXFP4 / NVFP4 in compressed-tensors): E2M1 codes two per byte, E8M0 shared exponents.

An E2M1 code is a 3-bit magnitude index into E2M1_VALUES plus a sign in bit 3. Byte j of a row holds column 2j in
its low nibble and column 2j+1 in its high nibble. An E8M0 byte is a biased power-of-two exponent (exp + 127).
"""

from __future__ import annotations

import torch

from ..errors import ArError, field_error

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes [N, K] into uint8 [N, ceil(K/2)] (low nibble = even column; odd K is zero-padded)."""
    codes = codes.to(torch.uint8)
    if codes.numel() and int(codes.max()) > 15:
        raise field_error(ArError, "codes", int(codes.max()), "4-bit values in [0, 15]")
    if codes.shape[-1] % 2:
        codes = torch.nn.functional.pad(codes, (0, 1))
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Inverse of `pack_nibbles`: uint8 [N, K/2] -> uint8 codes [N, k] (k defaults to 2 * packed columns)."""
    packed = packed.to(torch.uint8)
    out = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(*packed.shape[:-1], -1)
    return out if k is None else out[..., :k]


def decode_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """Float32 values of E2M1 codes (bit 3 = sign, bits 0..2 = index into E2M1_VALUES)."""
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    codes = codes.to(torch.int64)
    mag = table[codes & 7]
    return torch.where(codes & 8 != 0, -mag, mag)


def e8m0_encode(scale: torch.Tensor) -> torch.Tensor:
    """Powers of two (float) -> uint8 E8M0 bytes `log2(scale) + 127`, clamped to 0..255."""
    exp = torch.round(torch.log2(scale.float().abs()))
    exp = torch.nan_to_num(exp, nan=-127.0, neginf=-127.0, posinf=128.0)
    return (exp + 127).clamp(0, 255).to(torch.uint8)


def e8m0_decode(code: torch.Tensor) -> torch.Tensor:
    """uint8 E8M0 bytes -> float32 scales 2^(code-127) (0xFF, the OCP NaN code, decodes to NaN)."""
    exp = code.to(torch.float32) - 127
    return torch.where(code.to(torch.int32) == 255, float("nan"), torch.exp2(exp))
