"""Packing codecs: integer and element codes <-> the byte layouts that checkpoint formats store.

    gptq  int32 words along the input dim (qweight) or the output dim (qzeros); 2/3/4/8 bits
    awq   int32 words along the output dim with the AWQ nibble interleave; 4 bits
    mlx   uint32 words along the input dim (rows = output channels); 2/3/4/5/6/8 bits
    fp4   two E2M1 codes per byte, E8M0 shared exponents
    fp8   float8_e4m3fn storage and scale casts

Every codec is exact: `unpack(pack(q)) == q`. Layouts are described in each module.
"""

from . import awq, fp4, fp8, gptq, mlx

__all__ = ["awq", "fp4", "fp8", "gptq", "mlx"]
