"""Save a pipeline with its quantized transformer, and load one back into diffusers through ar_kernels.

Layout: the pipeline directory as diffusers writes it (model_index.json, one folder per component); the other
components are copied from the source pipeline directory (or saved from the objects), and `transformer/` holds
the quantized denoiser written by ar_export's writer: `auto_round` (packed int codes, scales and zero points;
config.json carries the auto-round `quantization_config`), or `fake` (dequantized weights, no quantization
config: a plain diffusers checkpoint). The weights file is named as diffusers names it
(diffusion_pytorch_model.safetensors).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ar_core.errors import CheckpointError, field_error
from ar_core.io import atomic_output_dir
from ar_core.registry import FORMATS

from .pipeline import check_pipeline_dir, require_diffusers, source_dir

FORMATS_ALLOWED = ("auto_round", "fake")
WEIGHTS = "diffusion_pytorch_model"


class _Config(dict):
    def to_dict(self) -> dict[str, Any]:
        return dict(self)


class _TransformerView:
    """What ar_export's writers read of a model (modules, state dict, parameters, config.to_dict()) for a diffusers
    transformer, whose config is diffusers' own."""

    def __init__(self, transformer: nn.Module):
        self.module = transformer
        self.config = _Config(json.loads(transformer.to_json_string()))

    def named_modules(self, *args, **kwargs):
        return self.module.named_modules(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def parameters(self, *args, **kwargs):
        return self.module.parameters(*args, **kwargs)


def _as_diffusers(folder: Path) -> None:
    """Give the writer's output diffusers' names: the weights file(s), and a config.json without `dtype` (a
    diffusers model would take it as a constructor argument)."""
    for f in folder.glob("model*.safetensors*"):
        f.rename(folder / f.name.replace("model", WEIGHTS, 1))
    config = json.loads((folder / "config.json").read_text())
    config.pop("dtype", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _copy_components(pipe: Any, out: Path) -> None:
    src = source_dir(pipe)
    for name, component in pipe.components.items():
        if name == "transformer" or component is None:
            continue
        if src is not None and (src / name).is_dir():
            shutil.copytree(src / name, out / name)
        elif hasattr(component, "save_pretrained"):
            component.save_pretrained(str(out / name))
    pipe.save_config(str(out))


def save_pipeline(pipe: Any, output_dir: str | Path, records: dict, format: str, cfg: Any,
                  overwrite: bool = False) -> Path:
    """Write `pipe` with its transformer's quantized layers (`records`) in `format` into `output_dir` (atomic)."""
    from ar_algos.run_info import run_info

    writer = FORMATS.get(format)
    writer.check({n: qt.scheme for n, qt in records.items()})
    with atomic_output_dir(output_dir, overwrite=overwrite) as tmp:
        _copy_components(pipe, tmp)
        writer.save(tmp / "transformer", _TransformerView(pipe.transformer), records, run_info=run_info(cfg))
        _as_diffusers(tmp / "transformer")
    return Path(output_dir)


def load_transformer(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                     backend: str | None = None) -> nn.Module:
    """The transformer of a saved pipeline: quantized layers as ar_kernels QuantLinears (auto_round), or a plain
    diffusers model (fake / 16-bit)."""
    import diffusers
    from ar_kernels.loading.checkpoint import CheckpointReader
    from ar_kernels.loading.load import install_quantized_layers, resolve_device

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    q = config.pop("quantization_config", None)
    dtype = dtype or torch.float32
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if cls is None:
        raise field_error(CheckpointError, "transformer _class_name", config.get("_class_name"),
                          "a diffusers model class")
    if q is None:
        return cls.from_pretrained(str(folder), torch_dtype=dtype).to(device).eval()
    device = resolve_device(device)
    model = cls.from_config(config).to(dtype)
    reader = CheckpointReader(folder)
    _, consumed = install_quantized_layers(model, reader, q, device, backend, dtype)
    rest = {k: reader.get(k) for k in reader.keys() if k not in consumed}
    missing, unexpected = model.load_state_dict(rest, strict=False)
    quantized = set(model.ar_backends)
    missing = [k for k in missing if k.rpartition(".")[0] not in quantized]
    if missing or unexpected:
        raise CheckpointError(f"transformer checkpoint {str(folder)!r} does not match its config: missing "
                              f"{missing[:8]}, unexpected {unexpected[:8]}")
    return model.to(device).eval()


def load_pipeline(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                  backend: str | None = None):
    """Load a pipeline saved by `save_pipeline` (or any supported pipeline directory) with its transformer from
    `load_transformer`; returns the diffusers pipeline on `device`."""
    path = Path(path)
    check_pipeline_dir(path)
    require_diffusers()
    from diffusers import DiffusionPipeline

    transformer = load_transformer(path / "transformer", device, dtype, backend)
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    pipe = DiffusionPipeline.from_pretrained(str(path), transformer=transformer, **kwargs)
    return pipe.to(device)


