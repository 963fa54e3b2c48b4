"""Static activation scales the writers store next to a layer's weight tensors (input_scale, input_global_scale)."""

from __future__ import annotations

import torch

from ar_core.errors import ArError, field_error
from ar_core.qtensor import QuantizedTensor


def static_input_scale(qt: QuantizedTensor, divisor: float) -> torch.Tensor:
    """act_max / divisor from the record's calibrated `extras['act_max']` (static activation schemes)."""
    if "act_max" not in qt.extras:
        raise field_error(ArError, "extras['act_max']", None,
                          "a calibrated activation maximum for static activation quantization (run calibration)")
    return torch.as_tensor(qt.extras["act_max"], dtype=torch.float32).reshape(1) / divisor
