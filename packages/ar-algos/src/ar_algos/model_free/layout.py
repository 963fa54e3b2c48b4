"""The layout model-free mode plans from: the quantizable layers, the LM head, tied embeddings, Conv1D layers and
the model's tensor order."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ar_core.layer_config import LayerInfo

HEAD = "lm_head"
FUSED = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}


@dataclass
class Layout:
    """The layers to plan, the LM head, whether it is tied, transposed (Conv1D) layers and the tensor order."""

    layers: list[LayerInfo]
    lm_head: str | None
    tied: bool
    transposed: set[str]
    order: list[str]


def block_of(name: str) -> str | None:
    """The block a layer sits in: its name up to the first numeric part ("model.layers.3"), or None."""
    m = re.match(r"^(.*?\.\d+)\.", name)
    return m.group(1) if m else None
