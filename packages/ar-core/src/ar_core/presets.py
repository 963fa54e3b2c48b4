"""Named presets (W4A16, MXFP4, GGUF:Q4_K_M, ...) and `parse_scheme`, which turns user input into a QuantScheme."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .errors import SchemeError, field_error
from .scheme import QuantScheme, field_names

_S = QuantScheme


def _w(bits: int, gs: int = 128) -> QuantScheme:
    return _S(bits=bits, group_size=gs, sym=True, data_type="int")


def _act(bits: int, gs: Any, dt: str, act_dt: str, dynamic: bool = True, act_gs: Any = None, sym: bool = True):
    return _S(bits=bits, group_size=gs, sym=sym, data_type=dt, act_bits=bits if act_gs != "w16" else 16,
              act_group_size=gs if act_gs is None else act_gs, act_sym=True, act_data_type=act_dt,
              act_dynamic=dynamic)


# GGUF llama.cpp base types: (bits, group, sym, data_type, super_bits, super_group_size).
GGUF_TYPES: dict[str, tuple[int, int, bool, str, int | None, int | None]] = {
    "q4_0": (4, 32, True, "int", None, None),
    "q4_1": (4, 32, False, "int_asym_float_zp", None, None),
    "q5_0": (5, 32, True, "int", None, None),
    "q5_1": (5, 32, False, "int_asym_float_zp", None, None),
    "q8_0": (8, 32, True, "int", None, None),
    "q2_k": (2, 16, False, "int_asym_dq", 4, 16),
    "q3_k": (3, 16, True, "int_sym_dq", 6, 16),
    "q4_k": (4, 32, False, "int_asym_dq", 6, 8),
    "q5_k": (5, 32, False, "int_asym_dq", 6, 8),
    "q6_k": (6, 16, True, "int_sym_dq", 8, 16),
}
# llama.cpp's replacement for a k-quant when a row is not a multiple of 256 (as in llama-cpp-python 0.3.36).
GGUF_ROW_FALLBACK: dict[str, str] = {"q2_k": "q4_0", "q3_k": "q4_0", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
# llama.cpp mixes: the suffix only changes the per-tensor type mix at export time.
GGUF_MIXES: dict[str, str] = {
    "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "q5_1": "q5_1", "q8_0": "q8_0",
    "q2_k": "q2_k", "q2_k_s": "q2_k", "q3_k_s": "q3_k", "q3_k_m": "q3_k", "q3_k_l": "q3_k",
    "q4_k_s": "q4_k", "q4_k_m": "q4_k", "q5_k_s": "q5_k", "q5_k_m": "q5_k", "q6_k": "q6_k",
}


def gguf_scheme(mix: str) -> QuantScheme:
    """The weight scheme of a GGUF type or mix name (e.g. 'q4_k_m' -> q4_k math, tagged gguf='q4_k_m')."""
    key = mix.lower().removeprefix("gguf:")
    base = GGUF_MIXES.get(key) or (key if key in GGUF_TYPES else None)
    if base is None:
        raise field_error(SchemeError, "scheme", mix, f"GGUF types {sorted(GGUF_MIXES)}")
    bits, gs, sym, dt, sb, sg = GGUF_TYPES[base]
    return _S(bits=bits, group_size=gs, sym=sym, data_type=dt, super_bits=sb, super_group_size=sg,
              scale_dtype="float32", gguf=key)


PRESETS: dict[str, QuantScheme] = {
    "W2A16": _w(2), "W2A16G32": _w(2, 32), "W2A16G64": _w(2, 64), "W3A16": _w(3), "W4A16": _w(4),
    "W5A16": _w(5), "W6A16": _w(6), "W8A16": _w(8), "W4A16_MIXED": _w(4),
    "MXFP4": _act(4, 32, "mx_fp", "mx_fp"), "MXFP4_RCEIL": _act(4, 32, "mx_fp", "mx_fp_rceil"),
    "MXFP6": _act(6, 32, "mx_fp", "mx_fp"),
    "MXFP8": _act(8, 32, "mx_fp", "mx_fp"), "MXFP8_RCEIL": _act(8, 32, "mx_fp", "mx_fp_rceil"),
    "MXINT4": _act(4, 32, "mx_int", "mx_int"),
    "NVFP4": _act(4, 16, "nv_fp", "nv_fp4_with_static_gs"),
    "FPW8A16": _S(bits=8, group_size=0, sym=True, data_type="fp"),
    "FP8_STATIC": _act(8, -1, "fp", "fp", dynamic=False, act_gs=0),
    "FP8_BLOCK": _act(8, (128, 128), "fp", "fp", act_gs=128),
    "INT8_W8A8": _act(8, -1, "int", "int", act_gs=-1),
    "W4A4": _act(4, -1, "int", "int", act_gs=-1),
    "BF16": _S(bits=16, group_size=128, sym=True, data_type="fp"),
}
PRESET_ALIASES = {"INT8": "INT8_W8A8", "INT4": "W4A4", "FP8": "FP8_STATIC", "W4G128": "W4A16"}
for _mix in GGUF_MIXES:
    PRESETS[f"GGUF:{_mix.upper()}"] = gguf_scheme(_mix)


def preset_names() -> list[str]:
    """Every preset name, in table order."""
    return list(PRESETS)


def get_preset(name: str) -> QuantScheme:
    """Look a preset up case-insensitively (also 'W4G32'-style shorthands: bits + group)."""
    key = name.strip().upper()
    key = PRESET_ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    if key.startswith("GGUF:") or key.lower() in GGUF_MIXES:
        return gguf_scheme(key)
    short = _shorthand(key)
    if short is not None:
        return short
    raise field_error(SchemeError, "scheme", name, f"a preset ({', '.join(PRESETS)}), "
                      "a shorthand like 'W4G32', or a dict of scheme fields")


def _shorthand(key: str) -> QuantScheme | None:
    """'W4G32' / 'W3A16G64' -> int sym scheme with those bits and group size."""
    import re

    m = re.fullmatch(r"W(\d)(?:A16)?G(\d+)", key)
    if not m:
        return None
    return _w(int(m.group(1)), int(m.group(2)))


_DATA_TYPE_SUFFIX = {"mx_fp4": ("mx_fp", 4), "mx_fp6": ("mx_fp", 6), "mx_fp8": ("mx_fp", 8), "fp8": ("fp", 8),
                     "nv_fp4": ("nv_fp", 4), "mx_int4": ("mx_int", 4), "int4": ("int", 4), "int8": ("int", 8),
                     "fp8_e4m3": ("fp", 8), "nvfp4": ("nv_fp", 4), "mxfp4": ("mx_fp", 4), "mxfp8": ("mx_fp", 8)}


def parse_scheme(scheme: str | Mapping[str, Any] | QuantScheme | None = "W4A16", **overrides: Any) -> QuantScheme:
    """Turn a preset name, a dict of fields (optionally with 'scheme': preset) or a QuantScheme into a QuantScheme.

    `overrides` with value None are ignored; the rest replace fields of the base scheme. GGUF presets refuse
    overrides (their math is fixed by llama.cpp). A data_type with a bit suffix ('mx_fp4', 'fp8') sets bits too.
    """
    if scheme is None:
        scheme = "W4A16"
    if isinstance(scheme, QuantScheme):
        base, extra = scheme, {}
    elif isinstance(scheme, str):
        base, extra = get_preset(scheme), {}
    elif isinstance(scheme, Mapping):
        extra = {k: v for k, v in scheme.items() if v is not None}
        name = extra.pop("scheme", None)
        if name is not None and not isinstance(name, str):
            raise field_error(SchemeError, "scheme", name, "a preset name")
        base = get_preset(name) if name else QuantScheme()
    else:
        raise field_error(SchemeError, "scheme", scheme, "a preset name, a dict of scheme fields or a QuantScheme")
    changes = {**extra, **{k: v for k, v in overrides.items() if v is not None}}
    if not changes:
        return base
    if base.gguf is not None:
        changed = {k for k, v in changes.items() if getattr(base, k, object()) != v}
        if changed:
            raise field_error(SchemeError, sorted(changed)[0], changes[sorted(changed)[0]],
                              f"GGUF preset {base.gguf!r} fixes its own bits/group_size/sym; pick another GGUF type")
    unknown = set(changes) - set(field_names())
    if unknown:
        bad = sorted(unknown)[0]
        raise field_error(SchemeError, "scheme field", bad, f"one of {field_names()}")
    if isinstance(changes.get("group_size"), list):
        changes["group_size"] = tuple(changes["group_size"])
    dt = changes.get("data_type")
    if isinstance(dt, str) and dt.lower() in _DATA_TYPE_SUFFIX:
        changes["data_type"], suffix_bits = _DATA_TYPE_SUFFIX[dt.lower()]
        changes.setdefault("bits", suffix_bits)
    new_dt = changes.get("data_type", base.data_type)
    if "data_type" in changes and new_dt != base.data_type and base.act_bits < 16 and "act_bits" not in changes:
        changes.setdefault("act_bits", 16)
    fields = {**dataclasses.asdict(base), **changes}
    for key in ("bits", "act_bits"):
        if not isinstance(fields[key], int) or isinstance(fields[key], bool):
            raise field_error(SchemeError, key, fields[key], "an int")
    if fields["act_bits"] < 16:
        fields["act_group_size"] = fields["act_group_size"] if fields["act_group_size"] is not None \
            else fields["group_size"]
        fields["act_sym"] = fields["sym"] if fields["act_sym"] is None else fields["act_sym"]
        fields["act_data_type"] = fields["act_data_type"] or fields["data_type"]
        fields["act_dynamic"] = True if fields["act_dynamic"] is None else fields["act_dynamic"]
    if fields["bits"] >= 16 and fields["data_type"] not in ("fp", "float"):
        fields["data_type"] = "float"
    return QuantScheme(**fields)
