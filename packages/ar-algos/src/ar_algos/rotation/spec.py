"""The `rotation=` option of AutoRound / `ar quantize --rotation`: parse it, apply it to a model.

A spec is None (off), "hadamard" / "random" (the default: calibrated per-linear Hadamards, `select`, with
deterministic or random-sign matrices), a mode string ("r1", "r1r2", "r1r2r4", "r4": QuaRot, `apply`; "block",
"block:64": every block linear's input in blocks of the group size or 64), or a dict with the keys mode, block_size,
random, seed and margin (block mode: rotate only layers whose calibration error drops below margin x unrotated;
None rotates every layer).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from ar_core.errors import ArError, field_error
from ar_core.scheme import QuantScheme

from ..blocks import find_blocks, find_linears, get_module
from .apply import block_hadamard, parse_mode, rotate_model
from .select import select_block_hadamard

DEFAULT_MODE = "block"
_KEYS = ("mode", "block_size", "random", "seed", "margin")
DEFAULT_MARGIN = 0.9
_ALLOWED = ("None, 'hadamard', 'random', a mode ('r1', 'r1r2', 'r1r2r4', 'r4', 'block', 'block:64') or a dict "
            "with keys mode, block_size, random, seed, margin")


def _from_string(text: str) -> dict[str, Any]:
    name = text.strip().lower()
    if name in ("hadamard", "random"):
        return {"mode": DEFAULT_MODE, "random": name == "random", "margin": DEFAULT_MARGIN}
    m = re.fullmatch(r"block(?::(\d+))?", name)
    if m:
        return {"mode": "block", "block_size": int(m.group(1)) if m.group(1) else None}
    return {"mode": "".join(parse_mode(name))}


def parse_rotation(spec: Any) -> dict[str, Any] | None:
    """The normalized spec {mode, block_size, random, seed} of a `rotation=` value, or None; bad values raise ArError
    naming the field. block_size None means the layer's quantization group size (its in_features per channel)."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        if not spec.strip():
            raise field_error(ArError, "rotation", spec, _ALLOWED)
        spec = _from_string(spec)
    if not isinstance(spec, dict) or set(spec) - set(_KEYS):
        raise field_error(ArError, "rotation", spec, _ALLOWED)
    out = {"mode": spec.get("mode", DEFAULT_MODE), "block_size": spec.get("block_size"),
           "random": spec.get("random", False), "seed": spec.get("seed", 0), "margin": spec.get("margin")}
    if out["mode"] != "block":
        out["mode"] = "".join(parse_mode(out["mode"]))
        for key in ("block_size", "margin"):
            if out[key] is not None:
                raise field_error(ArError, f"rotation.{key}", out[key], "None unless mode is 'block'")
    margin = out["margin"]
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or
                               not 0 < margin <= 1):
        raise field_error(ArError, "rotation.margin", margin, "None (rotate every layer) or a number in (0, 1]")
    size = out["block_size"]
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 2):
        raise field_error(ArError, "rotation.block_size", size, "None (the group size) or an int >= 2")
    if not isinstance(out["random"], bool):
        raise field_error(ArError, "rotation.random", out["random"], "True or False")
    if not isinstance(out["seed"], int) or isinstance(out["seed"], bool) or out["seed"] < 0:
        raise field_error(ArError, "rotation.seed", out["seed"], "an int >= 0")
    return out


def needs_data(spec: dict[str, Any] | None) -> bool:
    """Whether a parsed spec picks its layers on calibration data (block mode with a margin)."""
    return spec is not None and spec["mode"] == "block" and spec["margin"] is not None


def needs_online(spec: dict[str, Any] | None) -> bool:
    """Whether a parsed spec leaves online rotations that a loader must re-insert (R4, block)."""
    return spec is not None and (spec["mode"] == "block" or "r4" in spec["mode"])


def check_format(spec: dict[str, Any] | None, fmt: str) -> None:
    """Raise ArError unless checkpoints of format `fmt` can hold the parsed `spec`: a rotation that leaves online
    Hadamards (R4, block, hadamard, random) has no loader that re-inserts them. auto-round 0.16.1 re-applies at load
    only its own transforms (one Hadamard size on every Linear but lm_head for MXFP/NVFP, or its QuaRot pass), and the
    other formats' configs have no place for them; foldable rotations (r1, r2) live in the weights alone."""
    if needs_online(spec):
        raise field_error(ArError, "rotation", spec["mode"],
                          f"a foldable rotation ('r1', 'r2', 'r1r2') with format {fmt!r}: its consumers cannot "
                          "re-insert online rotations (auto-round 0.16.1 re-applies only its own Hadamard "
                          "transforms at load)")


def _block_sizes(model: nn.Module, blocks: list[str], schemes: dict[str, QuantScheme], size: int | None) -> dict:
    """Rotation order -> the block linears it rotates: `size`, else each quantized layer's group size."""
    out: dict[int, list[str]] = {}
    for b in blocks:
        for n, layer in find_linears(get_module(model, b)).items():
            name = f"{b}.{n}"
            if size is None and name not in schemes:
                continue  # a layer kept in float: no group size to follow, leave it alone
            out.setdefault(size or schemes[name].effective_group_size(layer.in_features), []).append(name)
    return out


def apply_rotation(model: nn.Module, spec: dict[str, Any], schemes: dict[str, QuantScheme],
                   blocks: list[str] | None = None, samples: list[dict] | None = None,
                   batch_size: int = 8) -> dict[str, Any]:
    """Rotate `model` in place as the parsed `spec` says; returns the rotation_config to save with the checkpoint
    (also set on model.config.rotation_config). `schemes`: the quantized layers' schemes (block mode follows their
    group sizes unless the spec names a block_size); `samples`: calibration inputs, needed when `needs_data`."""
    if spec["mode"] != "block":
        return rotate_model(model, spec["mode"], random=spec["random"], seed=spec["seed"])
    blocks = blocks or find_blocks(model)
    kw = dict(random=spec["random"], seed=spec["seed"])
    if needs_data(spec):
        if not samples:
            raise field_error(ArError, "samples", samples, f"calibration samples for rotation margin {spec['margin']}")
        online = select_block_hadamard(model, blocks, schemes, samples, spec["block_size"], margin=spec["margin"],
                                       batch_size=batch_size, **kw)
    else:
        online = [e for size, layers in _block_sizes(model, blocks, schemes, spec["block_size"]).items()
                  for e in block_hadamard(model, size, layers, **kw)["online"]]
    config = {"mode": "block", "random": spec["random"], "seed": spec["seed"], "margin": spec["margin"],
              "online": online}
    if hasattr(model, "config"):
        model.config.rotation_config = config
    return config
