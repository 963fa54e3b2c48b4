"""Backends: capability records, the registry and per-layer selection."""

from .base import Backend
from .registry import BUILTIN, get_backend, list_backends, register_builtin, select_backend

__all__ = ["BUILTIN", "Backend", "get_backend", "list_backends", "register_builtin", "select_backend"]
