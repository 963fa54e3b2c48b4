"""`mlx` and `auto_round:mlx` formats: MLX affine layers (uint32 weight, fp16 scales and biases), loaded by mlx-lm.

config.json gets `quantization` = {group_size, bits, "<layer>": {group_size, bits} for each quantized layer, "<layer>":
false for Linear/Embedding layers kept in 16 bits}. `mlx` mirrors it as `quantization_config`; `auto_round:mlx`
writes an auto-round config (packing_format "mlx") there instead. MLX groups are 32, 64 or 128 and must divide in.
"""

from __future__ import annotations

from typing import Any

import torch

from ar_core.layouts import get_layout
from ar_core.qtensor import QuantizedTensor

from .auto_round import auto_round_config
from .checkpoint import SaveContext, Writer, require
from .qconfig import global_scheme

MLX_GROUPS = (32, 64, 128)


def mlx_quantization(ctx: SaveContext) -> dict[str, Any]:
    """The mlx-lm `quantization` dict: global bits/group_size, per-layer entries, false for 16-bit layers."""
    g = global_scheme(ctx)
    out: dict[str, Any] = {"group_size": g.group_size, "bits": g.bits}
    for name, mod in ctx.model.named_modules():
        qt = ctx.quantized.get(name)
        if qt is not None and qt.scheme.is_quantized:
            out[name] = {"group_size": qt.scheme.group_size, "bits": qt.scheme.bits}
        elif isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
            out[name] = False
    return out


class MlxFormat(Writer):
    """Writer of the `mlx` format."""

    name = "mlx"

    def check_layer(self, name: str, qt: QuantizedTensor) -> None:
        gs = qt.scheme.group_size
        require(gs in MLX_GROUPS, f"group_size of {name}", gs, f"one of {list(MLX_GROUPS)} for MLX")
        require(qt.in_features % gs == 0, f"in_features of {name}", qt.in_features,
                f"a multiple of group_size {gs} for MLX")

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: SaveContext) -> dict[str, torch.Tensor]:
        return get_layout("mlx").to_tensors(qt)

    def quant_config(self, ctx: SaveContext) -> dict[str, Any]:
        return mlx_quantization(ctx)

    def finish_config(self, config: dict[str, Any], ctx: SaveContext) -> None:
        config["quantization"] = mlx_quantization(ctx)
        rope = config.get("rope_parameters")
        if isinstance(rope, dict) and "rope_theta" in rope:  # mlx-lm reads transformers 4's flat rope fields
            config.setdefault("rope_theta", rope["rope_theta"])
            if rope.get("rope_type", "default") != "default":
                config.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})


class AutoRoundMlxFormat(MlxFormat):
    """Writer of the `auto_round:mlx` format (MLX tensors, auto-round quantization_config)."""

    name = "auto_round:mlx"

    def quant_config(self, ctx: SaveContext) -> dict[str, Any]:
        return auto_round_config(ctx, "mlx")


FORMAT = MlxFormat()
AUTO_ROUND_FORMAT = AutoRoundMlxFormat()
