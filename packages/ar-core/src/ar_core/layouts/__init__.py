"""Packing layouts, one `Layout` object per packing name, shared by writers, QuantLinear modules, the loader and
`convert` (see `base` for the protocol, `ints` and `floats` for the packings)."""

from . import floats, ints
from .base import LAYOUTS, Layout, describe, expect, get_layout, per_row_groups, register_layout

__all__ = ["LAYOUTS", "Layout", "describe", "expect", "floats", "get_layout", "ints", "per_row_groups",
           "register_layout"]
