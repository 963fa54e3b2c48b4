"""`Backend`: what one kernel family can run (capabilities) and which QuantLinear class runs each packing."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ar_core.scheme import QuantScheme

ALL_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def device_type(device) -> str:
    """"cuda:1" / torch.device("cuda", 1) -> "cuda"."""
    return device.type if isinstance(device, torch.device) else str(device).split(":")[0]


@dataclass(frozen=True)
class Backend:
    """Capabilities and priority of one backend; `modules` is "pkg.module:ATTR", a dict packing -> QuantLinear class.

    A field set to None accepts any value. `auto_devices` (default: `devices`) are the device types where
    automatic selection may pick the backend; elsewhere it runs only when asked for by name. `checks` are extra
    predicates (scheme, packing, device, in, out) that return a reason string when the layer cannot run, else None;
    `detail` (same arguments) says which kernel path a capable backend runs for the layer. Higher `priority` wins
    among capable backends.
    """

    name: str
    devices: tuple[str, ...]
    packings: tuple[str, ...]
    data_types: tuple[str, ...]
    bits: tuple[int, ...]
    modules: str
    priority: int = 0
    sym: tuple[bool, ...] = (True, False)
    group_sizes: tuple[int, ...] | None = None
    dtypes: tuple[torch.dtype, ...] = ALL_FLOAT_DTYPES
    requires: tuple[str, ...] = ()
    install: str = "pip install ar-kernels"
    checks: tuple[Callable[..., str | None], ...] = field(default=())
    auto_devices: tuple[str, ...] | None = None
    description: str = ""
    detail: Callable[..., str] | None = None

    def is_installed(self) -> bool:
        """Whether every module in `requires` can be imported."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def unsupported(self, scheme: QuantScheme, packing: str, device: str, in_features: int,
                    out_features: int, dtype: torch.dtype | None = None) -> str | None:
        """Why this backend cannot run the layer (None when it can, installs aside)."""
        device = device_type(device)
        tests = [
            (packing in self.packings, f"packing {packing!r} not in {list(self.packings)}"),
            (device in self.devices, f"device {device!r} not in {list(self.devices)}"),
            (scheme.data_type in self.data_types, f"data_type {scheme.data_type!r} not in {list(self.data_types)}"),
            (scheme.bits in self.bits, f"bits {scheme.bits} not in {list(self.bits)}"),
            (scheme.sym in self.sym, f"sym={scheme.sym} not supported"),
            (self.group_sizes is None or scheme.group_size in self.group_sizes,
             f"group_size {scheme.group_size} not in {list(self.group_sizes or ())}"),
            (dtype is None or dtype in self.dtypes, f"dtype {dtype} not in {[str(d) for d in self.dtypes]}"),
        ]
        for ok, reason in tests:
            if not ok:
                return reason
        for check in self.checks:
            reason = check(scheme, packing, device, in_features, out_features)
            if reason:
                return reason
        return None

    def path(self, scheme: QuantScheme, packing: str, device: str, in_features: int, out_features: int) -> str:
        """The kernel path this backend runs for the layer ("" when the backend has one path)."""
        return "" if self.detail is None else self.detail(scheme, packing, device_type(device), in_features,
                                                          out_features)

    def auto_selectable(self, device: str) -> bool:
        """Whether automatic selection may pick this backend on `device`."""
        return device_type(device) in (self.devices if self.auto_devices is None else self.auto_devices)

    def module_class(self, packing: str):
        """The QuantLinear class this backend uses for `packing` (imports the backend's module)."""
        mod, attr = self.modules.split(":")
        return getattr(importlib.import_module(mod), attr)[packing]
