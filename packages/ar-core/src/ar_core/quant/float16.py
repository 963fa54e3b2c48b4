"""float: the 16/32-bit data type of layers kept in high precision (no quantize-dequantize math)."""

from __future__ import annotations

from .base import DataType, register_data_type


@register_data_type
class FloatType(DataType):
    """float: bits 16 or 32, weights stored as they are."""

    name = "float"
    bits = (16, 32)
    kind = "float"
