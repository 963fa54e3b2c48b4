"""AutoScheme: per-layer mixed-bit search under an average-bits budget (sensitivity scores + exact knapsack).

    from ar_algos.autoscheme import AutoScheme
    search = AutoScheme(avg_bits=3.0, options="W2A16G32,W4A16G32,W8A16G32", shared_layers=[["q_proj", "k_proj",
                        "v_proj"]])
    layer_config = search.search(model, tokenizer)       # {layer name: "W4A16G32", ...}; search.report has the bits
    AutoRound(model, tokenizer, scheme="W2A16G32", layer_config=layer_config, ...)
"""

from .options import Option, parse_options
from .search import AutoScheme, SearchReport
from .solver import solve
from .units import decision_units

__all__ = ["AutoScheme", "Option", "SearchReport", "decision_units", "parse_options", "solve"]
