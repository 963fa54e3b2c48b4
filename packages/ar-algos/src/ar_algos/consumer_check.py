"""Preflight of a save: which consumers of a format cannot load what it would write for this model's layer shapes.

The writer answers through its `consumers(schemes, in_features)` (ar_export's capability table); a format without
that method is not checked.
"""

from __future__ import annotations

import warnings
from typing import Any

from ar_core.errors import ArError, field_error
from ar_core.scheme import QuantScheme

GROUPS = (32, 64, 128)


def _advice(schemes: dict[str, QuantScheme], in_features: dict[str, int]) -> str:
    widths = {in_features[n] for n in schemes if n in in_features}
    fits = [g for g in GROUPS if all(w % g == 0 for w in widths)]
    groups = f"a group_size that divides every layer's in_features ({', '.join(map(str, fits))})" if fits else \
        "a group_size that divides every layer's in_features"
    return f"{groups}, or a format whose consumers run these shapes (docs/formats.md, `ar list formats`)"


def check_consumers(fmt: Any, schemes: dict[str, QuantScheme], in_features: dict[str, int],
                    unloadable: str = "warn") -> None:
    """Warn (unloadable="warn") when a consumer that loads `fmt`'s schemes cannot run some layer of these shapes;
    with unloadable="error", raise ArError before any work when no consumer at all can load the result."""
    if unloadable not in ("warn", "error"):
        raise field_error(ArError, "unloadable", unloadable, "'warn' or 'error'")
    report = getattr(fmt, "consumers", None)
    if report is None:
        return
    usual, shaped = report(schemes), report(schemes, in_features)
    lost = {c: why for c, (ok, why) in shaped.items() if usual[c][0] and not ok}
    if not lost:
        return
    left = [c for c, (ok, _) in shaped.items() if ok]
    why = "; ".join(f"{c}: {w}" for c, w in lost.items())
    if unloadable == "error" and not left:
        raise field_error(ArError, "format", fmt.name, f"a format some consumer can load for this model ({why}); use "
                          + _advice(schemes, in_features))
    warnings.warn(f"format {fmt.name!r}: {', '.join(lost)} cannot load this model's checkpoint ({why}); it still "
                  f"loads in {', '.join(left) or 'ar_kernels.load only'}. Use {_advice(schemes, in_features)}",
                  stacklevel=3)
