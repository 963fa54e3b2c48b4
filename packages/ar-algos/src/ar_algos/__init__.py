"""ar-algos: Calibration, block-wise driver, RTN, optimized RTN, SignRound, AWQ, AutoScheme and the AutoRound API.

The public names are imported on first use (module `__getattr__`), so `import ar_algos.model_free` and the
model-free worker processes never pay for transformers. The algorithms reach `ar_core.registry.ALGORITHMS`
through this package's `ar.algorithms` entry points.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .autoround import AutoRound
    from .autoscheme import AutoScheme
    from .config import RECIPES, TuneConfig

# public name -> the submodule that defines it
_LAZY = {"AutoRound": ".autoround", "AutoScheme": ".autoscheme", "RECIPES": ".config", "TuneConfig": ".config"}

__all__ = ["AutoRound", "AutoScheme", "RECIPES", "TuneConfig"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first access and cache the name in this module."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes, the lazily imported public names included."""
    return sorted(set(globals()) | set(__all__))
