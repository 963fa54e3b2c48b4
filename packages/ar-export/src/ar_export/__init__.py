"""ar-export: Writers for quantized checkpoints: auto_round, auto_gptq, auto_awq, llm_compressor, gguf, mlx, fp8, fake.

Each writer is a stateless object with `name`, `supports(scheme)`, `check(schemes)` and `save(...)`
(see `ar_core.protocols.ExportFormat`), advertised to `ar_core.registry.FORMATS` through the "ar.formats" entry points.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

# registry name -> module holding FORMAT (entry-point names cannot contain ':', hence auto_round_mlx)
WRITERS = {"auto_round": "auto_round", "auto_gptq": "auto_gptq", "auto_awq": "auto_awq",
           "llm_compressor": "llm_compressor", "mlx": "mlx", "auto_round_mlx": "mlx", "fp8": "fp8", "fake": "fake"}


def get_writer(name: str):
    """The writer object registered as `name` (also accepts 'auto_round:mlx')."""
    key = name.lower().replace("auto_round:mlx", "auto_round_mlx")
    module = import_module(f"{__name__}.{WRITERS[key]}")
    return module.AUTO_ROUND_FORMAT if key == "auto_round_mlx" else module.FORMAT


def register_all() -> list[str]:
    """Register every writer of this package in ar_core's FORMATS registry (tests, no entry points needed)."""
    from ar_core.registry import FORMATS

    names = list(WRITERS)
    for name in names:
        FORMATS.register(name, get_writer(name))
    try:  # the gguf writer needs the [gguf] extra
        from .gguf import FORMAT as gguf_format
    except ImportError:
        return names
    FORMATS.register("gguf", gguf_format)
    return names + ["gguf"]


def format_matrix(presets: list[str] | None = None) -> dict[str, dict[str, bool]]:
    """{format: {preset: supported}} for `ar list formats` (see ar_export.support)."""
    from .support import format_matrix as matrix

    return matrix(presets)


def consumer_matrix(presets: list[str] | None = None) -> dict[str, dict[str, list[str] | None]]:
    """{format: {preset: consumers that load it, or None}} for docs/formats.md (see ar_export.capabilities)."""
    from .support import consumer_matrix as matrix

    return matrix(presets)
