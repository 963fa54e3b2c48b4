"""Plain-data records of a layer-configuration plan: the layers it is built from and the scheme chosen for each."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import LayerConfigError
from ..scheme import QuantScheme


@dataclass(frozen=True)
class LayerInfo:
    """What the resolver needs to know about one weight-bearing layer (no torch module, just shapes and flags).

    kind: "linear", "conv1d", "embedding", "expert", ...; in_block: inside a quantized decoder block;
    is_router: an MoE router/gate; fused_group: layers a serving kernel fuses (q/k/v, gate/up) share this name.
    in_features is the length of a stored weight row, the axis quantization groups run along: for an embedding
    (weight [vocab, dim]) pass in_features=dim, out_features=vocab.
    """

    name: str
    in_features: int
    out_features: int
    kind: str = "linear"
    in_block: bool = True
    is_router: bool = False
    fused_group: str | None = None


@dataclass(frozen=True)
class LayerPlan:
    """The scheme chosen for one layer, why, and where it came from.

    source: "default" (the default scheme or a built-in rule), "user" (layer_config), "ignore" (ignore_layers),
    "predefined" (MoE router kept 16-bit) or "fallback" (the layer's shape cannot hold what was asked).
    pattern: the ignore_layers entry or non-exact layer_config key that chose it, if any.
    """

    scheme: QuantScheme
    source: str
    reason: str = ""
    fixed_by_user: bool = False
    pattern: str | None = None


@dataclass
class Plan:
    """The resolved scheme of every layer, in model order, plus what the exporters need to describe it.

    entries: layer name -> LayerPlan; fallbacks: (layer name, reason) for every layer whose requested scheme was
    changed because of its shape; regex_config: user patterns (not exact layer names) -> the scheme they asked for,
    kept for export metadata; unmatched: patterns that matched no layer (only filled when strict=False).
    """

    default: QuantScheme
    entries: dict[str, LayerPlan]
    fallbacks: list[tuple[str, str]] = field(default_factory=list)
    regex_config: dict[str, QuantScheme] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    format: str | None = None
    lm_head: str | None = None

    def quantized(self) -> list[str]:
        """Names of the layers stored in fewer than 16 bits, in model order."""
        return [n for n, e in self.entries.items() if e.scheme.is_quantized]

    def schemes(self) -> dict[str, QuantScheme]:
        """Layer name -> resolved QuantScheme for every layer."""
        return {n: e.scheme for n, e in self.entries.items()}

    def to_table(self) -> str:
        """A printable table: one row per layer with its bits, group, data type, source and reason."""
        head = ("layer", "bits", "group", "data_type", "act_bits", "source", "reason")
        rows = [head] + [(n, str(e.scheme.bits), str(e.scheme.group_size), e.scheme.gguf or e.scheme.data_type,
                          str(e.scheme.act_bits), e.source, e.reason) for n, e in self.entries.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
        return "\n".join(line.rstrip() for line in lines)

    def to_json(self) -> str:
        """Serialize the plan to a JSON string that `Plan.from_json` reads back to an equal plan."""
        return json.dumps({
            "default": self.default.to_dict(),
            "entries": {n: {"scheme": e.scheme.to_dict(), "source": e.source, "reason": e.reason,
                            "fixed_by_user": e.fixed_by_user, "pattern": e.pattern}
                        for n, e in self.entries.items()},
            "fallbacks": [list(f) for f in self.fallbacks],
            "regex_config": {p: s.to_dict() for p, s in self.regex_config.items()},
            "unmatched": self.unmatched, "format": self.format, "lm_head": self.lm_head,
        })

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """Read a plan written by `to_json`; a malformed document raises LayerConfigError."""
        try:
            d = json.loads(text)
            return cls(
                default=scheme_from_dict(d["default"]),
                entries={n: LayerPlan(scheme_from_dict(e["scheme"]), e["source"], e["reason"],
                                      e["fixed_by_user"], e["pattern"]) for n, e in d["entries"].items()},
                fallbacks=[(n, r) for n, r in d["fallbacks"]],
                regex_config={p: scheme_from_dict(s) for p, s in d["regex_config"].items()},
                unmatched=list(d["unmatched"]), format=d["format"], lm_head=d["lm_head"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, LayerConfigError):
                raise
            raise LayerConfigError(f"plan JSON is malformed ({type(e).__name__}: {e}); write it with Plan.to_json")


def scheme_from_dict(d: dict[str, Any]) -> QuantScheme:
    """Rebuild a QuantScheme from its `to_dict()` form (JSON lists back to tuples)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return QuantScheme(**fields)
