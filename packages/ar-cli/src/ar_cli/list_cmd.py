"""`ar list schemes|formats|backends|recipes|algorithms|datasets`."""

from __future__ import annotations

import argparse

from ar_core.bits import bits_per_weight
from ar_core.presets import PRESETS
from ar_core.registry import REGISTRIES

REFERENCE_SHAPE = (4096, 4096)
WHAT = ("schemes", "formats", "backends", "recipes", "algorithms", "datasets")


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `ar list`."""
    p = sub.add_parser("list", help="list schemes, formats, backends, recipes, algorithms or datasets",
                       allow_abbrev=False)
    p.add_argument("what", choices=WHAT)
    return p


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def list_schemes(shape: tuple[int, int] = REFERENCE_SHAPE) -> str:
    """Every preset with its weight and activation settings and its bits per weight on a layer of `shape`
    [out, in] (ar_core.bits), counting the scale/zero bits ("bpw") and the codes only ("code bpw")."""
    rows = [("scheme", "bits", "group", "sym", "data_type", "act_bits", "bpw", "code bpw")]
    for name, s in PRESETS.items():
        total, codes = (bits_per_weight(s, shape, with_params=w) for w in (True, False))
        rows.append((name, s.bits, s.group_size, s.sym, s.gguf or s.data_type, s.act_bits, f"{total:.4g}",
                     f"{codes:.4g}"))
    return _table(rows) + (f"\nbpw: bits per weight of a {shape[0]}x{shape[1]} layer with scale/zero bits; code bpw: "
                           "the codes alone (GGUF mixes: their base type)")


def list_formats() -> str:
    """Every export format, whether it is installed, which presets it can hold, and the consumers that load them
    (ar_export.capabilities, the table docs/formats.md shows with the reasons; `*`: declared, not run here)."""
    from ar_export import consumer_matrix
    from ar_export.capabilities import DECLARED

    matrix = consumer_matrix()
    registry = REGISTRIES["formats"]
    rows = [("format", "installed", "loaded by", "presets it holds")]
    for name in sorted(set(registry.known_names()) | set(matrix)):
        held = {p: c for p, c in matrix.get(name, {}).items() if c is not None}
        users = dict.fromkeys(c + "*" * (c in DECLARED) for cs in held.values() for c in cs)
        rows.append((name, "yes" if registry.is_available(name) else "no", ", ".join(users) or "-",
                     ", ".join(held) or "-"))
    return _table(rows) + "\nper preset and with the reasons: docs/formats.md; *: declared, not run in ar's tests"


def _joined(values) -> str:
    return "any" if values is None else ",".join(map(str, values)) or "-"


def list_backends() -> str:
    """Inference backends by priority (ar_kernels.backend_table): devices (automatic ones first), what they run,
    whether they are installed and the install command."""
    from ar_kernels import backend_table

    rows = [("backend", "priority", "devices (auto)", "data types", "bits", "group sizes", "packings", "installed",
             "install")]
    table = backend_table()
    for b in table:
        rows.append((b["name"], b["priority"], f"{_joined(b['devices'])} ({_joined(b['auto_devices'])})",
                     _joined(b["data_types"]), _joined(b["bits"]), _joined(b["group_sizes"]), _joined(b["packings"]),
                     "yes" if b["installed"] else "no", b["install"]))
    return _table(rows) + "\n" + "\n".join(f"{b['name']}: {b['description']}" for b in table)


def list_recipes() -> str:
    """The tuning recipes and the flags each one fills."""
    from ar_algos.config import RECIPES

    rows = [("recipe", "fills (when unset)")]
    rows += [(name, ", ".join(f"--{k} {v}" for k, v in knobs.items())) for name, knobs in RECIPES.items()]
    return _table(rows)


def list_registry(kind: str) -> str:
    """Names known to a plugin registry, and whether each can be loaded now (else the install to run)."""
    reg = REGISTRIES[kind]
    rows = [(kind[:-1], "installed", "install")]
    rows += [(n, "yes" if reg.is_available(n) else "no", reg.install_hints.get(reg.key(n), "-"))
             for n in reg.known_names()]
    return _table(rows)


def run(args: argparse.Namespace) -> int:
    """Print the requested list."""
    show = {"schemes": list_schemes, "formats": list_formats, "backends": list_backends, "recipes": list_recipes}
    print(show[args.what]() if args.what in show else list_registry(args.what))
    return 0
