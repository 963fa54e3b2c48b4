"""Which scheme each format can hold, read from the capability table (ar_export.capabilities): every writer's
`check()` and `format_matrix()` use it.

A scheme is reduced to a *kind* (its storage family) plus its bit width; a format holds a scheme when the table lists
the kind with that width. Layers kept in 16/32 bits are held by every format.
"""

from __future__ import annotations

from ar_core.errors import ArError, SchemeError, field_error
from ar_core.registry import get_data_type
from ar_core.scheme import QuantScheme

from .capabilities import formats, kinds

# kind -> bit widths, per format: read from the capability table (ar_export.capabilities.TABLE)
SUPPORT: dict[str, dict[str, tuple[int, ...]]] = {fmt: kinds(fmt) for fmt in formats()}


def scheme_kind(s: QuantScheme) -> str:
    """Storage family of a quantized scheme: int_sym, int_asym, int_w8a8, int_act, mx_fp, mx_int, nv_fp,
    fp8_weight, fp8_static, fp8_dynamic, fp8_block or gguf ('float' for 16/32-bit layers), as its data type declares
    (`ar_core.quant.DataType.storage_kind`; a data type that declares none raises SchemeError)."""
    if not s.is_quantized:
        return "float"
    if s.gguf is not None:
        return "gguf"
    return get_data_type(s.data_type).storage_kind(s)


def supports(fmt: str, s: QuantScheme) -> bool:
    """True when format `fmt` can store layers quantized with `s`."""
    if not s.is_quantized:
        return True
    return s.bits in SUPPORT.get(fmt, {}).get(scheme_kind(s), ())


def formats_for(s: QuantScheme) -> list[str]:
    """Formats of this package that can store `s`."""
    return [f for f in SUPPORT if supports(f, s)]


def check_schemes(fmt: str, schemes: dict[str, QuantScheme]) -> None:
    """Raise SchemeError naming the first layer whose scheme `fmt` cannot store, and the formats that can."""
    for name, s in schemes.items():
        if not supports(fmt, s):
            other = ", ".join(formats_for(s)) or "none"
            raise field_error(SchemeError, f"scheme of layer {name!r}",
                              f"{scheme_kind(s)} {s.bits}-bit ({_short(s)})",
                              f"format {fmt!r} holds {_describe(fmt)}; formats that hold it: {other}")


def _short(s: QuantScheme) -> str:
    d = s.to_dict()
    return ", ".join(f"{k}={d[k]}" for k in ("data_type", "group_size", "sym", "act_bits") if k in d)


def _describe(fmt: str) -> str:
    return "; ".join(f"{k} {list(v)}" for k, v in SUPPORT[fmt].items())


def format_matrix(presets: list[str] | None = None) -> dict[str, dict[str, bool]]:
    """{format: {preset: supported}} over every installed format (ar_core FORMATS registry) and preset."""
    from ar_core.presets import PRESETS
    from ar_core.registry import FORMATS

    from . import register_all

    register_all()
    names = presets or list(PRESETS)
    out = {}
    for fmt in FORMATS.names():
        try:
            writer = FORMATS.get(fmt)
        except ArError:
            continue
        out[fmt] = {p: bool(writer.supports(PRESETS[p])) for p in names}
    return out


def consumer_matrix(presets: list[str] | None = None) -> dict[str, dict[str, list[str] | None]]:
    """{format: {preset: consumers that load it per ar_export.capabilities ([] for a 16-bit preset), or None when
    the format cannot store it}} over the same formats and presets as `format_matrix`."""
    from ar_core.presets import PRESETS
    from ar_core.registry import FORMATS

    from .capabilities import CONSUMERS, YES, capability

    out: dict[str, dict[str, list[str] | None]] = {}
    for fmt, held in format_matrix(presets).items():
        name = FORMATS.get(fmt).name
        out[fmt] = {}
        for p, ok in held.items():
            s = PRESETS[p]
            cap = capability(name, scheme_kind(s), s.bits) if ok and s.is_quantized else None
            out[fmt][p] = None if not ok else [c for c in CONSUMERS if cap and cap.loads[c] == YES]
    return out
