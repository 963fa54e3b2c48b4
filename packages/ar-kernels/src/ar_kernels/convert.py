"""`convert`: re-store a quantized int checkpoint (GPTQ, AWQ, auto-round, compressed-tensors) in another format.

The stored tensors are unpacked to the exact integer codes, scales and zero points (`records.layer_record`) and
handed to the format's writer from `ar_core.registry.FORMATS` (ar-export), so the bytes are those the exporter
writes after quantization. The skeleton model lives on the meta device; only the 16-bit tensors are read.

    ar_kernels.convert("Qwen-gptq", "Qwen-autoround", format="auto_round")
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ar_core.errors import CheckpointError
from ar_core.registry import FORMATS
from ar_core.remote_code import remote_code_guard

from .loading.checkpoint import CheckpointReader
from .loading.load import find_blocks, meta_skeleton, quantization_config
from .loading.plan import plan_layers
from .records import layer_record


def _meta_model(path: Path, trust_remote_code: bool):
    from transformers import AutoConfig

    with remote_code_guard(path, trust_remote_code):
        return meta_skeleton(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), trust_remote_code)


def read_records(path: str | Path, model: nn.Module, reader: CheckpointReader) -> tuple[dict, set[str]]:
    """QuantizedTensor per quantized Linear of `model` as the checkpoint at `path` stores it, and the tensor names
    those layers consume."""
    linears = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    has_scales = {k.rpartition(".")[0] for k in reader.keys() if k.endswith(".scales")}
    plans = plan_layers(quantization_config(path), linears, find_blocks(model), has_scales)
    records, consumed = {}, set()
    for name, plan in plans.items():
        if plan is None:
            continue
        tensors = {k: v for k, v in reader.local(name).items() if k != "bias"}
        records[name] = layer_record(name, plan, tensors, *linears[name])
        consumed.update(f"{name}.{k}" for k in tensors)
    return records, consumed


def _load_float_tensors(model: nn.Module, reader: CheckpointReader, consumed: set[str], quantized: dict) -> None:
    rest = {k: reader.get(k) for k in reader.keys() if k not in consumed}
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    rest = {k: v.to(dtype) if v.is_floating_point() else v for k, v in rest.items()}
    unexpected = model.load_state_dict(rest, strict=False, assign=True).unexpected_keys
    if unexpected:
        raise CheckpointError(f"checkpoint tensors {unexpected[:8]} belong to no layer of the model")
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    missing = [k for k, t in model.state_dict().items()
               if t.is_meta and not (k.rpartition(".")[0] in quantized and k.endswith(".weight"))]
    if missing:
        raise CheckpointError(f"checkpoint lacks tensors the model needs: {missing[:8]}")


def convert(src_dir: str | Path, dst_dir: str | Path, format: str = "auto_round", overwrite: bool = False,
            trust_remote_code: bool = False) -> Path:
    """Write the quantized checkpoint `src_dir` as `format` (a FORMATS writer, e.g. "auto_round") into `dst_dir`.

    Integer codes, scales and zero points are carried over exactly; 16-bit tensors keep the source dtype (unless
    the format forces one). Tokenizer, generation config and custom code files are copied. `dst_dir` is written
    atomically. Raises CheckpointError for layouts that hold no int records (FP8, MX, NVFP4, MLX) and PluginError
    naming the `pip install` when the writer is missing.
    """
    writer = FORMATS.get(format)
    src = Path(src_dir)
    model = _meta_model(src, trust_remote_code)
    reader = CheckpointReader(src)
    records, consumed = read_records(src, model, reader)
    if not records:
        raise CheckpointError(f"{str(src)!r}: the quantization config quantizes no Linear layer of the model")
    _load_float_tensors(model, reader, consumed, records)
    return writer.save(dst_dir, model, records, source_dir=src, overwrite=overwrite)
