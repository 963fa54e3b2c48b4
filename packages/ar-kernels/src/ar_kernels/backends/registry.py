"""Backend registry and per-layer selection."""

from __future__ import annotations

import torch

from ar_core import registry as core_registry
from ar_core.errors import PluginError
from ar_core.scheme import QuantScheme

from . import cpu_backend, mlx_backend, torch_backend, triton_backend
from .base import Backend, device_type

BUILTIN: tuple[Backend, ...] = (torch_backend.BACKEND, cpu_backend.BACKEND, triton_backend.BACKEND,
                                mlx_backend.BACKEND)


def register_builtin() -> None:
    """Put the built-in backends into ar_core.registry.BACKENDS (entry points advertise them too)."""
    for b in BUILTIN:
        core_registry.BACKENDS.register(b.name, b)


def list_backends() -> list[Backend]:
    """Built-in backends plus any Backend another package registered in ar_core.registry.BACKENDS."""
    found = {b.name: b for b in BUILTIN}
    for name in core_registry.BACKENDS.names():
        if name in found:
            continue
        try:
            obj = core_registry.BACKENDS.get(name)
        except PluginError:
            continue
        if isinstance(obj, Backend):
            found[name] = obj
    return sorted(found.values(), key=lambda b: -b.priority)


def get_backend(name: str) -> Backend:
    """The backend called `name` (PluginError listing the known names otherwise)."""
    for b in list_backends():
        if b.name == name.lower():
            return b
    raise PluginError(f"unknown backend {name!r}; known: {[b.name for b in list_backends()]}")


def _describe(scheme: QuantScheme, packing: str) -> str:
    return (f"{scheme.data_type} {scheme.bits}-bit group_size={scheme.group_size} sym={scheme.sym}, "
            f"packing {packing!r}")


def select_backend(scheme: QuantScheme, packing: str, device: str | torch.device, in_features: int,
                   out_features: int, backend: str | None = None, layer: str = "?",
                   dtype: torch.dtype | None = None) -> tuple[Backend, str]:
    """Pick the highest-priority installed backend able to run the layer; returns (backend, reason).

    `backend` restricts the choice to one name ("auto" or None: every backend whose auto_devices hold `device`).
    Raises PluginError naming the layer, its scheme, why each backend was rejected and the `pip install` of
    capable backends that are not installed.
    """
    device = device_type(device)
    auto = backend in (None, "auto")
    candidates = list_backends() if auto else [get_backend(backend)]
    capable, rejected, missing = [], [], []
    for b in candidates:
        why = b.unsupported(scheme, packing, device, in_features, out_features, dtype)
        if not why and auto and not b.auto_selectable(device):
            why = f"runs on {device} only when asked for by name (backend={b.name!r})"
        if why:
            rejected.append(f"{b.name}: {why}")
        elif not b.is_installed():
            missing.append(f"{b.name} (`{b.install}`)")
        else:
            capable.append(b)
    if not capable:
        hint = f"; could run it if installed: {', '.join(missing)}" if missing else ""
        raise PluginError(f"no backend can run layer {layer!r} ({_describe(scheme, packing)}, "
                          f"in={in_features}, out={out_features}, device {device}): {'; '.join(rejected)}{hint}")
    best = max(capable, key=lambda b: b.priority)
    others = [b.name for b in capable if b is not best]
    path = best.path(scheme, packing, device, in_features, out_features)
    reason = (f"{best.name} (priority {best.priority}) runs {_describe(scheme, packing)} on {device}"
              + (f" [{path}]" if path else "")
              + (f"; also capable: {', '.join(others)}" if others else "")
              + (f"; rejected: {'; '.join(rejected)}" if rejected else ""))
    return best, reason
