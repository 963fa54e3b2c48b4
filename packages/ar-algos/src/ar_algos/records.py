"""Moving `QuantizedTensor` records off the device and to/from plain dicts (for checkpoints)."""

from __future__ import annotations

from typing import Any

import torch

from ar_core.plan.types import scheme_from_dict
from ar_core.qtensor import QuantizedTensor


def _cpu(v: Any) -> Any:
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def record_to_cpu(qt: QuantizedTensor) -> QuantizedTensor:
    """The same record with every tensor on the CPU."""
    return QuantizedTensor(codes=_cpu(qt.codes), scale=_cpu(qt.scale), zero=_cpu(qt.zero), scheme=qt.scheme,
                           shape=tuple(qt.shape), extras={k: _cpu(v) for k, v in qt.extras.items()})


def record_state(qt: QuantizedTensor) -> dict[str, Any]:
    """A dict of tensors and plain values that `record_from_state` turns back into an equal record."""
    return {"codes": qt.codes, "scale": qt.scale, "zero": qt.zero, "scheme": qt.scheme.to_dict(),
            "shape": list(qt.shape), "extras": dict(qt.extras)}


def record_from_state(d: dict[str, Any]) -> QuantizedTensor:
    """Inverse of `record_state`."""
    return QuantizedTensor(codes=d["codes"], scale=d["scale"], zero=d["zero"], scheme=scheme_from_dict(d["scheme"]),
                           shape=tuple(d["shape"]), extras=dict(d["extras"]))
