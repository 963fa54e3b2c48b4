"""Plugin registries filled from Python entry points.

Installed packages advertise plugins under the entry-point groups below; `ar-core` never imports them directly.
An unknown name lists what is available; a known name whose package is missing names the `pip install` to run.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from .errors import PluginError, SchemeError, field_error


class Registry:
    """A name -> object registry for one kind of plugin, filled lazily from an entry-point group."""

    def __init__(self, kind: str, group: str, install_hints: dict[str, str] | None = None,
                 spellings: dict[str, str] | None = None, builtins: str | None = None):
        self.kind = kind
        self.group = group
        # a module of this package whose import registers the built-in plugins, imported on the first lookup
        self.builtins = builtins
        self.install_hints = dict(install_hints or {})
        # registry key -> the name users see where it differs (entry-point names cannot hold ':'); both are accepted
        self.spellings = {k.lower(): v.lower() for k, v in (spellings or {}).items()}
        self._keys = {v: k for k, v in self.spellings.items()}
        self._items: dict[str, Any] = {}
        self._entry_points: dict[str, Any] | None = None

    def key(self, name: str) -> str:
        """The registry key of `name` (either of its accepted spellings, any case)."""
        name = str(name).lower()
        return self._keys.get(name, name)

    def shown(self, key: str) -> str:
        """The name users see for a registry key."""
        return self.spellings.get(key, key)

    def register(self, name: str, obj: Any = None) -> Any:
        """Register `obj` under `name`; usable as a decorator when `obj` is omitted."""
        key = self.key(name)

        def add(o):
            self._items[key] = o
            return o

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Forget an object registered in code (entry points stay discoverable)."""
        self._items.pop(self.key(name), None)

    def _discover(self) -> dict[str, Any]:
        if self._entry_points is None:
            if self.builtins is not None:
                import_module(self.builtins, __package__)  # relative: ar-core may be vendored
            self._entry_points = {ep.name.lower(): ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def names(self) -> list[str]:
        """Names that can be loaded now (registered or advertised by an installed package)."""
        return sorted({self.shown(k) for k in set(self._items) | set(self._discover())})

    def known_names(self) -> list[str]:
        """Every name the toolkit knows about, installed or not."""
        return sorted(set(self.names()) | {self.shown(k) for k in self.install_hints})

    def knows(self, name: str) -> bool:
        """Whether `name` (either spelling) is a name the toolkit knows, installed or not."""
        key = self.key(name)
        return key in self._items or key in self._discover() or key in self.install_hints

    def is_available(self, name: str) -> bool:
        """Whether `name` can be loaded without an install."""
        try:
            self.get(name)
        except PluginError:
            return False
        return True

    def get(self, name: str) -> Any:
        """Return the plugin called `name`, loading its entry point on first use."""
        key = self.key(name)
        if key not in self._items:
            self._discover()
        if key in self._items:
            return self._items[key]
        ep = self._discover().get(key)
        if ep is not None:
            try:
                obj = ep.load()
            except ImportError as exc:
                hint = self.install_hints.get(key)
                fix = f"; run `{hint}`" if hint else ""
                raise PluginError(f"{self.kind} {name!r} is installed but cannot load ({exc}){fix}") from exc
            self._items[key] = obj
            return obj
        if key in self.install_hints:
            raise PluginError(f"{self.kind} {name!r} is not installed; run `{self.install_hints[key]}`")
        available = ", ".join(self.names()) or "none installed"
        raise PluginError(f"unknown {self.kind} {name!r}; available: {available}")


_EXPORT = "pip install ar-export"
FORMATS = Registry("format", "ar.formats", {
    **{k: _EXPORT for k in ("auto_round", "auto_round_mlx", "auto_gptq", "auto_awq", "llm_compressor", "mlx", "fp8",
                            "fake")},
    "gguf": "pip install 'ar-export[gguf]'",
}, spellings={"auto_round_mlx": "auto_round:mlx"})
BACKENDS = Registry("backend", "ar.backends", {
    "torch": "pip install ar-kernels",
    "triton": "pip install 'ar-kernels[triton]'",
    "mlx": "pip install 'ar-kernels[mlx]'",
})
ALGORITHMS = Registry("algorithm", "ar.algorithms", {
    k: "pip install ar-algos" for k in ("rtn", "opt-rtn", "signround", "awq", "autoscheme")
})
DATASETS = Registry("calibration dataset", "ar.datasets", {
    k: "pip install ar-algos" for k in ("pile-10k", "wiki", "austen", "pydoc")
})
# data types (ar_core.quant.DataType classes): the built-in ones register on the first lookup, plugins through the
# "ar.data_types" entry points (a DataType subclass each) or `ar_core.quant.register_data_type`
DATA_TYPES = Registry("data type", "ar.data_types", builtins=".quant")

REGISTRIES: dict[str, Registry] = {"formats": FORMATS, "backends": BACKENDS, "algorithms": ALGORITHMS,
                                   "datasets": DATASETS, "data_types": DATA_TYPES}


def get_plugin(kind: str, name: str) -> Any:
    """Look up `name` in the registry for `kind` (formats, backends, algorithms, datasets)."""
    return REGISTRIES[kind].get(name)


def get_data_type(name: Any) -> Any:
    """The `ar_core.quant.DataType` registered as `name`; an unknown name raises SchemeError listing the known ones."""
    if not isinstance(name, str) or not DATA_TYPES.is_available(name):
        raise field_error(SchemeError, "data_type", name, f"one of {DATA_TYPES.names()}")
    found = DATA_TYPES.get(name)
    if isinstance(found, type):  # an entry point names the class: keep one instance
        found = DATA_TYPES.register(name, found())
    return found
