"""Where blocks run: `device` (one accelerator) or `device_map` (one block's linears spread over several devices).

A block (or a group of `nblocks` blocks) is moved to the main device; with a device map its linears are then moved
one by one to their own devices, each with hooks that move its input there and its output back to the main device.
So attention, norms and the loss run on the main device and only the weights and matmuls are spread (reference §1.10:
"0,1" / "auto" spread over GPUs, a dict places layers by name).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from ar_core.errors import ArError, field_error

from .blocks import find_linears

MAIN_DEVICE_ATTR = "_ar_main_device"  # set on a module while its layers are spread (see module_device)


def parse_device(device: Any, name: str = "device") -> torch.device:
    """None/'auto' -> CUDA when available else CPU; 'cpu', 'cuda', 'cuda:N', 'N' or N (a GPU index) -> that device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(f"cuda:{device}" if isinstance(device, int) or str(device).isdigit() else device)
    except (RuntimeError, TypeError):
        raise field_error(ArError, name, device, "None/'auto', 'cpu', 'cuda', 'cuda:N' or a GPU index") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise field_error(ArError, name, device, "'cpu' (no CUDA device is available)")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise field_error(ArError, name, device, f"a GPU index below {torch.cuda.device_count()}")
    return dev


@dataclass(frozen=True)
class DeviceMap:
    """main: where blocks, their inputs and the loss live; spread: devices the linears of a block are split over
    in order (balanced by size; one device: no spreading); layers: layer name (full, or its last parts such as
    'mlp.down_proj') -> device, for a dict device map."""

    main: torch.device
    spread: tuple[torch.device, ...] = ()
    layers: dict[str, torch.device] = field(default_factory=dict)

    @property
    def spreads(self) -> bool:
        """Whether the linears of a block leave the main device's placement (hooks are needed)."""
        return len(self.spread) > 1 or bool(self.layers)

    @property
    def devices(self) -> set[torch.device]:
        """Every device the map uses."""
        return {self.main, *self.spread, *self.layers.values()}


def parse_device_map(device_map: Any = None, device: Any = None) -> DeviceMap:
    """The DeviceMap of AutoRound's `device_map` and `device` arguments (ArError naming the field when bad).

    device_map: None (use `device`), a device or GPU index, 'auto' (every GPU, else the CPU), a comma-separated
    string such as '0,1', a list of devices, or a dict {layer name: device} (the rest of the block on `device`).
    """
    if device_map is None:
        return DeviceMap(parse_device(device))
    if isinstance(device_map, dict):
        if not device_map or not all(isinstance(k, str) and k for k in device_map):
            raise field_error(ArError, "device_map", device_map, "a non-empty dict {layer name: device}")
        return DeviceMap(parse_device(device), layers={k: parse_device(v, "device_map") for k, v in device_map.items()})
    if device is not None:
        raise field_error(ArError, "device", device, "None when device_map is a device or a list of devices "
                          "(the first device of device_map is the main one)")
    if device_map == "auto":
        count = torch.cuda.device_count()
        devices = [torch.device(f"cuda:{i}") for i in range(count)] or [torch.device("cpu")]
    else:
        single = isinstance(device_map, (int, torch.device)) and not isinstance(device_map, bool)
        parts = device_map.split(",") if isinstance(device_map, str) else [device_map] if single else device_map
        if not isinstance(parts, (list, tuple)) or not parts or any(isinstance(p, str) and not p.strip()
                                                                      for p in parts):
            raise field_error(ArError, "device_map", device_map, "a device, 'auto', '0,1', a list of devices or a "
                              "dict {layer name: device}")
        wanted = [p.strip() if isinstance(p, str) else p for p in parts]
        if len(wanted) > 1 and any(str(p).isdigit() or isinstance(p, int) or str(p).startswith("cuda")
                                   for p in wanted) and torch.cuda.device_count() < len(wanted):
            raise field_error(ArError, "device_map", device_map, f"several devices need that many CUDA GPUs; "
                              f"this machine has {torch.cuda.device_count()}")
        devices = [parse_device(p, "device_map") for p in wanted]
    return DeviceMap(devices[0], tuple(devices) if len(devices) > 1 else ())


def check_layers(dmap: DeviceMap, layer_names: list[str]) -> None:
    """Raise ArError when a dict device map names a layer that is none of `layer_names` (full names)."""
    for key in dmap.layers:
        if not any(_matches(name, key) for name in layer_names):
            raise field_error(ArError, "device_map", key, "the name (or last parts, e.g. 'mlp.down_proj') of a "
                              "linear layer inside the blocks")


def _matches(name: str, key: str) -> bool:
    return name == key or name.endswith("." + key)


def assign_devices(layers: dict[str, nn.Module], dmap: DeviceMap,
                   full_names: dict[str, str]) -> dict[str, torch.device]:
    """Device of each layer of a block ({name: module}, in forward order) under `dmap`.

    A dict map places the layers it names (matched on `full_names[name]`), the rest stay on the main device; a list
    cuts the layers, in order, into consecutive runs of about equal parameter count, one per device.
    """
    if dmap.layers:
        out = {}
        for name in layers:
            hit = [dev for key, dev in dmap.layers.items() if _matches(full_names[name], key)]
            out[name] = hit[0] if hit else dmap.main
        return out
    if not dmap.spread:
        return {name: dmap.main for name in layers}
    sizes = {name: sum(p.numel() for p in m.parameters(recurse=False)) for name, m in layers.items()}
    total, done, k = max(sum(sizes.values()), 1), 0, len(dmap.spread)
    out = {}
    for name, size in sizes.items():
        out[name] = dmap.spread[min(int((done + size / 2) / total * k), k - 1)]
        done += size
    return out


def module_device(module: nn.Module) -> torch.device:
    """Where `module` runs: its main device while spread by `placed`, else the device of its first parameter."""
    return getattr(module, MAIN_DEVICE_ATTR, None) or next(module.parameters()).device


def spread(module: nn.Module, dmap: DeviceMap, full_names: dict[str, str]) -> list:
    """Move each linear of `module` to its device under `dmap` and hook it to take its input there and give its
    output back on the main device; returns the hook handles. Nothing happens when `dmap` does not spread."""
    if not dmap.spreads:
        return []
    handles = []
    for name, dev in assign_devices(find_linears(module), dmap, full_names).items():
        layer = module.get_submodule(name) if name else module
        layer.to(dev)
        handles.append(layer.register_forward_pre_hook(
            lambda _m, args, dev=dev: tuple(a.to(dev) if isinstance(a, torch.Tensor) else a for a in args)))
        handles.append(layer.register_forward_hook(lambda _m, _args, out: out.to(dmap.main)))
    return handles


@contextmanager
def placed(module: nn.Module, dmap: DeviceMap, full_names: dict[str, str]) -> Iterator[nn.Module]:
    """Run `module` on the devices of `dmap` inside the block; afterwards it goes back where it was."""
    home = next(module.parameters()).device
    module.to(dmap.main)
    handles = spread(module, dmap, full_names)
    if handles:
        setattr(module, MAIN_DEVICE_ATTR, dmap.main)
    try:
        yield module
    finally:
        for h in handles:
            h.remove()
        module.__dict__.pop(MAIN_DEVICE_ATTR, None)
        module.to(home)
