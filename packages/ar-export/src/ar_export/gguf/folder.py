"""GGUF from a model folder with `ar-export[gguf]` alone: config.json, safetensors and tokenizer files, no transformers.

`read_folder` turns a float checkpoint, or an ar / auto_round / GPTQ checkpoint in GPTQ word order, into a
`FolderModel` (the config as attributes, the float state dict with quantized layers dequantized) and the integer
records of its quantized layers. `convert_folder` writes them with `write_gguf`: a record whose scheme is a GGUF
type (W4 g32 sym -> q4_0, W8 g32 sym -> q8_0, ...) is packed as is, every other weight is quantized by the mix.
The in-workspace path (a transformers model holding the same weights) writes the byte-identical file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import load_file

from ar_core.errors import ArError, CheckpointError
from ar_core.qtensor import QuantizedTensor

from .stored import layer_record, layer_scheme, split_layers, zero_offset
from .vocab import folder_tokenizer
from .writer import record_type, write_gguf


class FolderModel:
    """What the GGUF writer reads from a model: `config` (config.json as attributes) and `state_dict()`."""

    def __init__(self, config: SimpleNamespace, state: dict[str, torch.Tensor]):
        self.config = config
        self._state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Float tensors by Hugging Face name (quantized layers dequantized)."""
        return dict(self._state)


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"model folder {str(folder)!r} has no .safetensors files")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(load_file(file))
    return tensors


def _config(folder: Path, tensors: dict[str, torch.Tensor]) -> tuple[SimpleNamespace, dict[str, Any]]:
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"model folder {str(folder)!r} has no config.json")
    raw = json.loads((folder / "config.json").read_text())
    qc = raw.pop("quantization_config", None)
    if qc is None and (folder / "quantization_config.json").is_file():
        qc = json.loads((folder / "quantization_config.json").read_text())
    raw.setdefault("tie_word_embeddings", "lm_head.weight" not in tensors)
    raw["_name_or_path"] = str(folder)
    return SimpleNamespace(**raw), qc or {}


def read_folder(folder: str | os.PathLike) -> tuple[FolderModel, dict[str, QuantizedTensor]]:
    """(model view, {layer: record}) of a saved checkpoint folder; CheckpointError names what cannot be read."""
    folder = Path(folder)
    tensors = _read_tensors(folder)
    config, qc = _config(folder, tensors)
    packed, plain = split_layers(tensors)
    state = {name: tensors[name] for name in plain}
    records = {}
    if packed:
        offset = zero_offset(qc)
        for layer, parts in sorted(packed.items()):
            records[layer] = layer_record(layer, parts, layer_scheme(qc, layer), offset)
            state[f"{layer}.weight"] = records[layer].dequantize()
    return FolderModel(config, state), records


def gguf_records(records: dict[str, QuantizedTensor]) -> dict[str, QuantizedTensor]:
    """The records whose scheme is a GGUF type (packed as is); the others are re-quantized by the mix."""
    out = {}
    for name, qt in records.items():
        try:
            record_type(qt)
        except ArError:
            continue
        out[name] = qt
    return out


def convert_folder(folder: str | os.PathLike, out_path: str | os.PathLike, mix: str = "q4_k_m",
                   imatrix: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the checkpoint in `folder` (config.json, safetensors, tokenizer.json or tokenizer.model) as one GGUF
    file at `out_path` with `mix`'s per-tensor types; returns the path. Needs only ar-export[gguf] (gguf,
    tokenizers, sentencepiece)."""
    model, records = read_folder(folder)
    return write_gguf(model, folder_tokenizer(folder), out_path, mix, gguf_records(records), imatrix)
