"""Static activation calibration: the abs-max of each quantized Linear's input over the calibration tokens.

Schemes whose activation scale is fixed at export time need it: FP8 static (input_scale = act_max / 448) and NVFP4
(input_global_scale = 448 * 6 / act_max, with dynamic per-16 block scales). The driver records it on the block pass
it already runs and stores it as `QuantizedTensor.extras['act_max']` (float32 scalar), which exporters read.
"""

from __future__ import annotations

import torch
from torch import nn

from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

from .rtn import collect_inputs


def needs_act_max(s: QuantScheme) -> bool:
    """True when `s` quantizes activations with a calibrated scale (static activations, or NVFP4's static global
    input scale)."""
    return s.quantizes_activations and (s.act_dynamic is False or s.act_data_type == "nv_fp4_with_static_gs")


def any_needs_act_max(schemes: dict[str, QuantScheme]) -> bool:
    """True when some layer of `schemes` needs a calibrated activation maximum (so the run needs calibration data)."""
    return any(needs_act_max(s) for s in schemes.values())


def collect_act_max(layers: dict[str, nn.Module]):
    """While active, keep the running max of |input| of every layer (float32 scalar on the CPU) in the yielded dict."""
    return collect_inputs(layers, lambda x: x.abs().max().float().cpu(), torch.maximum)


def static_layers(layers: dict[str, nn.Module], schemes: dict[str, QuantScheme]) -> dict[str, nn.Module]:
    """The layers of `layers` whose scheme needs a calibrated activation maximum."""
    return {n: layers[n] for n, s in schemes.items() if needs_act_max(s)}


def attach_act_max(records: dict[str, QuantizedTensor], act_max: dict[str, torch.Tensor]) -> None:
    """Store each record's calibrated maximum in extras['act_max'] (static schemes only). A layer that saw no tokens
    (an idle expert) gets the maximum over the other layers, as the reference does."""
    fallback = max(act_max.values(), key=float) if act_max else None
    for name, qt in records.items():
        if needs_act_max(qt.scheme):
            value = act_max.get(name, fallback)
            if value is not None:
                qt.extras["act_max"] = value.reshape(()).float()
