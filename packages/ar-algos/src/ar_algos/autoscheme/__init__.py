"""AutoScheme: per-layer mixed-bit search under an average-bits budget (sensitivity scores + exact knapsack)."""

from .options import Option, parse_options
from .search import AutoScheme, SearchReport
from .solver import solve
from .units import decision_units

__all__ = ["AutoScheme", "Option", "SearchReport", "decision_units", "parse_options", "solve"]
