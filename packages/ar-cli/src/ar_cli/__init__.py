"""ar-cli: The `ar` command line: quantize, eval, list, inspect, recipes."""

__version__ = "0.1.0"
