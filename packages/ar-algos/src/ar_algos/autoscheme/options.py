"""AutoScheme candidate options: parse, de-duplicate and describe the schemes a layer may take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ar_core.errors import SchemeError, field_error
from ar_core.presets import parse_scheme
from ar_core.scheme import QuantScheme


@dataclass(frozen=True)
class Option:
    """One candidate: `value` is what goes into the resulting layer_config (the preset name as given, or a dict
    of scheme fields), `scheme` the parsed QuantScheme."""

    value: Any
    scheme: QuantScheme


def parse_options(options: Any) -> list[Option]:
    """A comma-separated string, or a list of preset names / dicts / QuantSchemes -> unique options (order kept).

    `*_MIXED` presets are refused (they are recipes over layers, not one scheme); at least one option is needed.
    """
    if isinstance(options, str):
        items: list[Any] = [s.strip() for s in options.split(",") if s.strip()]
    elif isinstance(options, (list, tuple)):
        items = list(options)
    else:
        raise field_error(SchemeError, "options", options, "a comma-separated string or a list of schemes")
    if not items:
        raise field_error(SchemeError, "options", options, "at least one scheme, e.g. 'W2A16G32,W4A16G32'")
    found: list[Option] = []
    for item in items:
        if isinstance(item, str) and item.strip().upper().endswith("_MIXED"):
            raise field_error(SchemeError, "options", item, "plain schemes (a *_MIXED preset is a layer recipe)")
        scheme = parse_scheme(item)
        if any(o.scheme == scheme for o in found):
            continue
        value = item.strip() if isinstance(item, str) else scheme.to_dict()
        found.append(Option(value, scheme))
    return found
