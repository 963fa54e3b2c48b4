"""Turn one layer_config value (preset name, QuantScheme or dict of fields) into a QuantScheme."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ArError, LayerConfigError
from ..presets import gguf_scheme, get_preset, parse_scheme
from ..scheme import QuantScheme


def _fail(key: str, value: Any, why: str) -> LayerConfigError:
    return LayerConfigError(f"layer_config[{key!r}]={value!r} is not allowed: {why}")


def entry_scheme(key: str, value: Any, default: QuantScheme) -> tuple[QuantScheme, bool]:
    """The scheme a layer_config value asks for and its fixed_by_user flag (True unless the dict says otherwise).

    Accepted values: a preset name ('W8A16', 'gguf:q8_0'), a QuantScheme, or a dict of scheme fields, optionally
    with 'scheme': <preset> as the base. A dict without 'scheme' starts from the default scheme, so {'bits': 8}
    keeps the default group size, symmetry and data type. A data_type with a bit suffix ('mx_fp8', 'int8') sets
    bits; a GGUF double-quant data_type ('int_asym_dq') with bits picks the matching llama.cpp k-quant. A dict
    with bits >= 16 keeps the layer in high precision whatever the default. A GGUF default cannot be tweaked field
    by field: name a GGUF type instead ({'scheme': 'gguf:q8_0'}).
    """
    try:
        if isinstance(value, QuantScheme):
            return value, True
        if isinstance(value, str):
            return get_preset(value), True
        if isinstance(value, Mapping):
            return _dict_scheme(key, value, default)
    except LayerConfigError:
        raise
    except (ArError, TypeError, ValueError, AttributeError, KeyError) as e:
        raise _fail(key, value, str(e)) from None
    raise _fail(key, value, "a preset name, a QuantScheme or a dict of scheme fields")


def _dict_scheme(key: str, value: Mapping, default: QuantScheme) -> tuple[QuantScheme, bool]:
    fields = dict(value)
    if not all(isinstance(k, str) for k in fields):
        raise _fail(key, value, "dict keys must be scheme field names (strings)")
    fixed = fields.pop("fixed_by_user", True)
    if not isinstance(fixed, bool):
        raise _fail(key, value, "fixed_by_user must be True or False")
    name = fields.pop("scheme", None)
    if name is not None:
        base = parse_scheme(name)
    else:
        base = default
        kquant = _kquant_name(fields)
        if kquant is not None:
            base = gguf_scheme(kquant)
            fields = {k: v for k, v in fields.items() if k not in ("bits", "data_type")}
    bits = fields.get("bits")
    if base.gguf is not None and isinstance(bits, int) and bits >= 16:
        base = QuantScheme()
    return parse_scheme(base, **fields), fixed


def _kquant_name(fields: dict[str, Any]) -> str | None:
    """'int_asym_dq'/'int_sym_dq' with explicit bits -> the llama.cpp k-quant mix of that width (q6 -> 'q6_k')."""
    dt, bits = fields.get("data_type"), fields.get("bits")
    if not (isinstance(dt, str) and dt.endswith("_dq") and isinstance(bits, int)):
        return None
    return "q6_k" if bits == 6 else f"q{bits}_k_s"
