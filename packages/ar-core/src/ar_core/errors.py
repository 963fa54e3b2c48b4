"""The project's own error types: every user-facing failure is an `ArError` naming the field, value and fix."""

from __future__ import annotations


class ArError(ValueError):
    """Base class of every error the ar toolkit raises on purpose (bad input, missing plugin, corrupt file)."""


class SchemeError(ArError):
    """A quantization scheme is malformed or holds an impossible combination."""


class LayerConfigError(ArError):
    """A layer_config / ignore_layers entry is malformed or matches no layer."""


class PluginError(ArError):
    """A plugin (format, backend, algorithm, dataset) is unknown or not installed."""


class DataError(ArError):
    """Calibration or evaluation data cannot be read or parsed."""


class CheckpointError(ArError):
    """A model or checkpoint directory is missing, truncated, corrupt or inconsistent."""


def field_error(cls: type[ArError], field: str, value, allowed: str) -> ArError:
    """Build an error of type `cls` that names the field, the offending value and what is allowed."""
    return cls(f"{field}={value!r} is not allowed: {allowed}")
