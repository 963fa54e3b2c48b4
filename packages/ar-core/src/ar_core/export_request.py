"""`ExportRequest`: what a quantization run hands every format writer, decided once per save.

Writers read the global scheme, the block lists and the GGUF mix from the request instead of re-deriving them each;
`build_request` fills whatever the run did not state from the records, in one place.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from .presets import GGUF_MIXES
from .qtensor import QuantizedTensor
from .scheme import QuantScheme


@dataclass(frozen=True)
class ExportRequest:
    """One save's facts. `records`: {layer: QuantizedTensor} in model order (16-bit layers may be absent or carry a
    16-bit scheme); `block_names`: the repeated-block lists holding quantized layers ("model.layers"); `global_scheme`:
    the scheme the quantization config states once (the others become per-layer overrides; None when no layer is
    quantized); `gguf_mix`: the llama.cpp mix asked for (None: not a GGUF run); `run_info`: the run's tuning knobs
    for the config."""

    records: Mapping[str, QuantizedTensor]
    block_names: tuple[str, ...] = ()
    global_scheme: QuantScheme | None = None
    gguf_mix: str | None = None
    run_info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def quantized_names(self) -> list[str]:
        """Layers stored quantized (bits < 16), in model order."""
        return [n for n, qt in self.records.items() if qt.scheme.is_quantized]


def block_prefixes(names: list[str]) -> list[str]:
    """Prefixes of the repeated blocks holding `names` ('model.layers.3.mlp.up_proj' -> 'model.layers')."""
    found: list[str] = []
    for n in names:
        m = re.match(r"^(.*?)\.\d+\.", n)
        if m and m.group(1) not in found:
            found.append(m.group(1))
    return found


def in_block(name: str, prefixes: list[str] | tuple[str, ...]) -> bool:
    """True when layer `name` sits inside one of the block lists `prefixes`."""
    return any(re.match(rf"^{re.escape(p)}\.\d+\.", name) for p in prefixes)


def common_scheme(records: Mapping[str, QuantizedTensor], blocks: list[str] | tuple[str, ...]) -> QuantScheme | None:
    """The most common scheme among quantized in-block layers (all quantized layers if none sit in blocks; the
    first in model order wins a tie)."""
    names = [n for n, qt in records.items() if qt.scheme.is_quantized]
    pool = [n for n in names if in_block(n, blocks)] or names
    return Counter(records[n].scheme for n in pool).most_common(1)[0][0] if pool else None


def common_gguf_mix(records: Mapping[str, QuantizedTensor]) -> str | None:
    """The most common llama.cpp mix name among the records' schemes (None when no record is tagged with one)."""
    tags = Counter(qt.scheme.gguf for qt in records.values() if qt.scheme.gguf in GGUF_MIXES)
    return tags.most_common(1)[0][0] if tags else None


def build_request(records: Mapping[str, QuantizedTensor], run_info: Mapping[str, Any] | None = None,
                  **known: Any) -> ExportRequest:
    """The request of a save of `records` (model order): `known` fields as the run states them; block_names and
    global_scheme otherwise from the records, gguf_mix from run_info['gguf'] or the records' mix tags."""
    run_info = dict(run_info or {})
    blocks = tuple(known.pop("block_names", None) or block_prefixes(
        [n for n, qt in records.items() if qt.scheme.is_quantized]))
    scheme = known.pop("global_scheme", None) or common_scheme(records, blocks)
    mix = known.pop("gguf_mix", None) or run_info.get("gguf") or common_gguf_mix(records)
    return ExportRequest(records=dict(records), block_names=blocks, global_scheme=scheme, gguf_mix=mix,
                         run_info=run_info, **known)
