"""FP8 (E4M3FN) storage helpers: element codes to float8 tensors, scales to the E4M3 grid and back."""

from __future__ import annotations

import torch

from ..errors import ArError, field_error

E4M3_MAX = 448.0


def to_float8(codes: torch.Tensor) -> torch.Tensor:
    """float8_e4m3fn view of FP8 codes given as float8 (returned as is) or as their raw uint8 bit patterns."""
    if codes.dtype == torch.float8_e4m3fn:
        return codes
    if codes.dtype in (torch.uint8, torch.int8):
        return codes.view(torch.uint8).view(torch.float8_e4m3fn)
    raise field_error(ArError, "codes.dtype", codes.dtype, "float8_e4m3fn or uint8 bit patterns")


def to_bits(weight: torch.Tensor) -> torch.Tensor:
    """Raw uint8 bit patterns of a float8_e4m3fn tensor (inverse of `to_float8`)."""
    return to_float8(weight).view(torch.uint8)


def encode_e4m3_scale(scale: torch.Tensor) -> torch.Tensor:
    """Cast float scales to float8_e4m3fn, saturating at +-448 (how NVFP4 block scales are stored)."""
    return scale.float().clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def decode_e4m3_scale(scale: torch.Tensor) -> torch.Tensor:
    """float8_e4m3fn (or uint8 bit patterns) scales -> float32."""
    return to_float8(scale).to(torch.float32)
