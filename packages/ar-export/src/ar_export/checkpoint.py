"""The save flow every writer shares: check, pack per layer, write tensors, config, tokenizer and source files.

A writer subclasses `Writer` and fills in `layer_tensors` (the stored tensors of one quantized layer) and
`quant_config` (the `quantization_config` dict, or None); everything else (atomic directory, sharded safetensors,
config.json, tokenizer, generation config, chat template, custom code) happens here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ar_core.errors import ArError, CheckpointError, field_error
from ar_core.export_request import ExportRequest, build_request
from ar_core.io import atomic_output_dir, save_sharded_safetensors
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

from . import dtypes
from .capabilities import verdicts
from .support import check_schemes, supports

SOURCE_FILES = ("chat_template.jinja", "chat_template.json", "generation_config.json", "preprocessor_config.json",
                "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "added_tokens.json")


class Writer:
    """Base of the format writers (stateless; one instance per format is registered in FORMATS)."""

    name = ""
    dtype: torch.dtype | None = None  # forced dtype of the 16-bit tensors (None: ar_export.dtypes.save_dtype)

    def write_config(self, config: dict[str, Any], qc: dict[str, Any] | None, ctx: "SaveContext", out: Path) -> None:
        """Write config.json and quantization_config.json into `out` (also used by model-free mode)."""
        write_config(self, config, qc, ctx, out)

    def supports(self, scheme: QuantScheme) -> bool:
        """True when this format can store a layer quantized with `scheme`."""
        return supports(self.name, scheme)

    def check(self, schemes: dict[str, QuantScheme]) -> None:
        """Raise ArError before any work when a layer's scheme cannot be stored in this format."""
        check_schemes(self.name, schemes)

    def consumers(self, schemes: dict[str, QuantScheme],
                  in_features: dict[str, int] | None = None) -> dict[str, tuple[bool, str]]:
        """{consumer: (loads, reason)} for a checkpoint of these layers (ar_export.capabilities.verdicts)."""
        return verdicts(self.name, schemes, in_features)

    def save_dtype(self, quantized: dict[str, QuantizedTensor]) -> torch.dtype | None:
        """dtype of the 16-bit tensors for this save (default: the class's `dtype`; None: the source checkpoint's
        16-bit dtype when the model runs in float32, else the model's)."""
        return self.dtype

    def check_layer(self, name: str, qt: QuantizedTensor) -> None:
        """Raise ArError when one quantized layer's shape cannot be stored (default: any shape)."""

    def layer_tensors(self, name: str, qt: QuantizedTensor, ctx: "SaveContext") -> dict[str, torch.Tensor]:
        """Tensors that replace `<name>.weight`, keyed by suffix (e.g. 'qweight')."""
        raise NotImplementedError

    def quant_config(self, ctx: "SaveContext") -> dict[str, Any] | None:
        """The `quantization_config` written into config.json (None: no quantization config)."""
        raise NotImplementedError

    def finish_config(self, config: dict[str, Any], ctx: "SaveContext") -> None:
        """Last edits of the config.json dict (default: none)."""

    def save(self, output_dir: str | Path, model: Any, quantized: dict[str, QuantizedTensor], *,
             tokenizer: Any = None, processor: Any = None, source_dir: str | Path | None = None,
             run_info: dict[str, Any] | None = None, overwrite: bool = False,
             request: ExportRequest | None = None) -> Path:
        """Write a complete checkpoint of `model` with `quantized` layers packed; returns the output path.

        `request`: the run's ExportRequest (global scheme, block lists, ...); built from the records when absent."""
        self.check({n: qt.scheme for n, qt in quantized.items()})
        require(any(qt.scheme.is_quantized for qt in quantized.values()), "quantized", "no layer below 16 bits",
                "at least one quantized Linear layer")
        dtype = self.save_dtype(quantized) or dtypes.save_dtype(model, source_dir)
        ctx = SaveContext(model, quantized, run_info or {}, dtype, request)
        for name, qt in quantized.items():
            if name not in ctx.linears:
                raise field_error(CheckpointError, "quantized layer", name, "the name of a Linear module of the model")
            if qt.scheme.is_quantized:
                self.check_layer(name, qt)
        tensors = collect_tensors(self, ctx)
        qc = self.quant_config(ctx)
        needed = sum(t.numel() * t.element_size() for t in tensors.values())
        with atomic_output_dir(output_dir, overwrite=overwrite, needed=needed) as tmp:
            save_sharded_safetensors(tensors, tmp, ctx.run_info.get("max_shard_size", "5GB"))
            self.write_config(model.config.to_dict(), qc, ctx, tmp)
            write_side_files(model, tmp, tokenizer, processor, source_dir)
        return Path(output_dir)


class SaveContext:
    """What a writer needs to know about one save: the model's Linear layers, records, dtype, run info and the
    run's `request` (ar_core.export_request; built here from the records in model order when not given)."""

    def __init__(self, model: Any, quantized: dict[str, QuantizedTensor], run_info: dict[str, Any],
                 dtype: torch.dtype | None, request: ExportRequest | None = None):
        self.model = model
        self.quantized = quantized
        self.run_info = run_info
        self.linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        self.dtype = dtype or dtypes.model_dtype(model)
        self.request = request or build_request({n: quantized[n] for n in self.linears if n in quantized}, run_info)

    @property
    def unquantized(self) -> list[str]:
        """Linear layers kept in 16 bits (absent from `quantized` or with a 16/32-bit scheme)."""
        return [n for n in self.linears if n not in self.quantized or not self.quantized[n].scheme.is_quantized]


def collect_tensors(writer: Writer, ctx: SaveContext) -> dict[str, torch.Tensor]:
    """The model's state dict (tied duplicates dropped, floats cast to ctx.dtype) with quantized weights replaced."""
    seen: dict[tuple, str] = {}
    out: dict[str, torch.Tensor] = {}
    packed = {n for n, qt in ctx.quantized.items() if qt.scheme.is_quantized}
    for key, t in ctx.model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in packed and leaf == "weight":
            for suffix, v in writer.layer_tensors(module, ctx.quantized[module], ctx).items():
                out[f"{module}.{suffix}"] = v.contiguous()
            continue
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.numel() else None
        if ident is not None and ident in seen:
            continue  # tied weight (e.g. lm_head = embed_tokens): stored once, as transformers does
        if ident is not None:
            seen[ident] = key
        out[key] = t.detach().to(ctx.dtype) if t.is_floating_point() else t.detach()
    return out


def write_config(writer: Writer, config: dict[str, Any], qc: dict[str, Any] | None, ctx: SaveContext,
                 out: Path) -> None:
    """config.json (the model config dict with `quantization_config` and dtype) and quantization_config.json."""
    config = dict(config)
    config.pop("quantization_config", None)
    config["dtype"] = str(ctx.dtype).removeprefix("torch.")
    if qc is not None:
        config["quantization_config"] = qc
        (out / "quantization_config.json").write_text(json.dumps(qc, indent=2) + "\n")
    writer.finish_config(config, ctx)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")


def write_side_files(model: Any, out: Path, tokenizer: Any, processor: Any, source_dir: str | Path | None) -> None:
    """Tokenizer / processor, generation config, and from `source_dir` the chat template and custom *.py code."""
    for obj in (processor, tokenizer):
        if obj is not None:
            obj.save_pretrained(str(out))
            break
    gen = getattr(model, "generation_config", None)
    if gen is not None and getattr(model, "can_generate", lambda: False)():
        gen.save_pretrained(str(out))
    if source_dir is None:
        return
    src = Path(source_dir)
    if not src.is_dir():
        raise field_error(CheckpointError, "source_dir", str(source_dir), "an existing model directory")
    names = list(SOURCE_FILES) + [p.name for p in src.glob("*.py")]
    if tokenizer is None and processor is None:
        names += TOKENIZER_FILES
    for name in names:
        if (src / name).is_file() and not (out / name).exists():
            shutil.copy2(src / name, out / name)


def require(cond: bool, field: str, value: Any, allowed: str) -> None:
    """Raise ArError(field, value, allowed) unless `cond`."""
    if not cond:
        raise field_error(ArError, field, value, allowed)
