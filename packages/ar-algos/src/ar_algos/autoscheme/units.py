"""Decision units of the search: layers that must take the same option (shared_layers groups, routed experts)."""

from __future__ import annotations

import re

from ar_core.errors import LayerConfigError, field_error

_EXPERTS = re.compile(r"^(.*\.experts)\.\d+\.")


def block_of(name: str) -> str:
    """The decoder block a layer sits in ('model.layers.3.mlp.up_proj' -> 'model.layers.3'; '' outside blocks)."""
    m = re.match(r"^(.*?\.\d+)\.", name)
    return m.group(1) if m else ""


def _matches(pattern: str, name: str) -> bool:
    try:
        if re.fullmatch(pattern, name) or re.search(pattern, name):
            return True
    except re.error:
        pass
    return pattern in name


class _UnionFind:
    def __init__(self, names: list[str]):
        self.parent = {n: n for n in names}

    def find(self, n: str) -> str:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, members: list[str]) -> None:
        roots = [self.find(m) for m in members]
        for r in roots[1:]:
            self.parent[r] = roots[0]


def decision_units(names: list[str], shared_layers=None) -> list[list[str]]:
    """Group `names` (model order) into units that take one option together.

    shared_layers: a list of groups, each a list of layer names or patterns. An exact layer name joins its group
    directly; a pattern (regex fullmatch/search, else substring) is matched inside each block separately, so
    [["q_proj", "k_proj", "v_proj"]] ties q/k/v of every block. Overlapping groups merge. The routed experts of
    one block (`...experts.<i>...`) always form a single unit.
    """
    uf = _UnionFind(names)
    by_block: dict[str, list[str]] = {}
    for n in names:
        by_block.setdefault(block_of(n), []).append(n)
    experts: dict[str, list[str]] = {}
    for n in names:
        m = _EXPERTS.match(n)
        if m:
            experts.setdefault(m.group(1), []).append(n)
    for members in experts.values():
        uf.union(members)
    for group in _check_groups(shared_layers):
        exact = [g for g in group if g in uf.parent]
        if len(exact) > 1:
            uf.union(exact)
        patterns = [g for g in group if g not in uf.parent]
        for block_names in by_block.values():
            hits = [n for n in block_names if any(_matches(p, n) for p in patterns)]
            if exact and hits:
                hits.append(exact[0])
            if len(hits) > 1:
                uf.union(hits)
    units: dict[str, list[str]] = {}
    for n in names:
        units.setdefault(uf.find(n), []).append(n)
    return list(units.values())


def _check_groups(shared_layers) -> list[list[str]]:
    if shared_layers is None:
        return []
    ok = isinstance(shared_layers, (list, tuple)) and all(
        isinstance(g, (list, tuple)) and g and all(isinstance(x, str) and x for x in g) for g in shared_layers)
    if not ok:
        raise field_error(LayerConfigError, "shared_layers", shared_layers,
                          "a list of groups, each a non-empty list of layer names or patterns")
    return [list(g) for g in shared_layers]
