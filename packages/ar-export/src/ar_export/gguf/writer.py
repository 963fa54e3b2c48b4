"""`write_gguf`: a transformers causal LM (+ tokenizer) -> one llama.cpp GGUF file.

Each 2-D+ weight gets its ggml type from the mix rules (ar_export.gguf.mix). A layer whose SignRound record is in
`quantized` is packed from its integer codes as is (its own GGUF type wins); any other weight is quantized here
with optimized RTN: llama.cpp-style searches for k-quants (imatrix-weighted when given). With an imatrix q4_0 uses
llama.cpp's weighted search and q5_0 our int scale search; without one they, like q4_1/q5_1/q8_0, use ggml's own RTN
(bit-exact with llama.cpp). 1-D tensors (norms, biases) are written as F32.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from ar_core.errors import CheckpointError, SchemeError, field_error
from ar_core.pack.gguf import CODECS, KQuant, pack_qtensor, rows_to_float, to_bf16_bits
from ar_core.presets import GGUF_MIXES, GGUF_TYPES, gguf_scheme
from ar_core.qtensor import QuantizedTensor
from ar_core.quant import quantize
from ar_core.quant.gguf import FP16_MAX
from ar_core.quant.gguf_search import search_legacy_sym
from ar_core.scheme import QuantScheme

from .arch import TensorSpec, get_arch, n_experts, tensor_specs, write_hparams
from .mix import FILE_TYPES, check_mix, fallback, wanted_type
from .tokenizer import write_special_ids, write_tokenizer

_GGML = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
         "bf16": gguf.GGMLQuantizationType.BF16,
         **{name: getattr(gguf.GGMLQuantizationType, name.upper()) for name in CODECS}}


CHUNK_ELEMENTS = 1 << 22  # weights quantized per optimized-RTN call
# Types without a parameter search in ar_core: always written with ggml's own RTN (bit-exact with llama.cpp).
REFERENCE_ONLY = ("q4_1", "q5_1", "q8_0")


@dataclass
class GGUFTensor:
    """One tensor as written: GGUF name, ggml type, stored numpy data, logical shape, HF module."""

    name: str
    qtype: str
    data: np.ndarray
    shape: tuple[int, ...]
    module: str

    def dequantize(self) -> torch.Tensor:
        """Float32 values of the stored data in GGUF layout (what a GGUF reader sees)."""
        return torch.from_numpy(rows_to_float(self.qtype, self.data, self.shape).copy())


def record_type(qt: QuantizedTensor) -> str:
    """The ggml type a QuantizedTensor can be stored as (from its scheme), or SchemeError."""
    s = qt.scheme
    for name, (bits, gs, sym, dt, _, _) in GGUF_TYPES.items():
        if (s.bits, s.group_size, s.data_type) == (bits, gs, dt) and (dt != "int" or s.sym):
            return name
    raise field_error(SchemeError, "scheme", s.to_dict(), f"a GGUF type ({sorted(GGUF_TYPES)})")


def quantize_rows(w: torch.Tensor, qtype: str, imatrix: torch.Tensor | None = None) -> np.ndarray:
    """Float weight [rows, cols] -> GGUF bytes [rows, bytes_per_row] with optimized RTN."""
    w = w.detach().float().cpu()
    if qtype == "f32":
        return w.numpy()
    if qtype == "f16":
        return w.numpy().astype(np.float16)
    if qtype == "bf16":
        return to_bf16_bits(w.numpy())
    codec = CODECS[qtype]
    if imatrix is not None and imatrix.numel() != w.shape[1]:
        imatrix = None
    if qtype in REFERENCE_ONLY or (not issubclass(codec, KQuant) and imatrix is None):
        return codec.pack(codec.reference_fields(w.numpy().reshape(-1, 32))).reshape(w.shape[0], -1)
    step = max(1, CHUNK_ELEMENTS // w.shape[1])  # bounded temporaries for large tensors (e.g. embeddings)
    if qtype == "q4_0":  # with an imatrix: llama.cpp's weighting (lower ppl than ours at 4 bits; benchmarks/README)
        return np.concatenate([_q4_0_imatrix_rows(w[i:i + step], imatrix) for i in range(0, w.shape[0], step)])
    scheme = gguf_scheme(qtype)
    if not issubclass(codec, KQuant):  # q5_0 with an imatrix: int sym scale search, fp16 scales as stored
        scheme = scheme.replace(scale_dtype="float16")
    return np.concatenate([pack_qtensor(quantize(w[i:i + step], scheme, search=True, imatrix=imatrix), qtype)
                           for i in range(0, w.shape[0], step)])


def _q4_0_imatrix_rows(w: torch.Tensor, imatrix: torch.Tensor) -> np.ndarray:
    """q4_0 bytes of float rows [R, n] from the imatrix-weighted search_legacy_sym (fp16 scale, codes re-rounded)."""
    d = search_legacy_sym(w, imatrix, 8).clamp(-FP16_MAX, FP16_MAX).half().float()
    blocks = w.reshape(-1, 32)
    q = torch.clamp(torch.round(blocks / torch.where(d == 0, torch.ones_like(d), d)), -8, 7) + 8
    return CODECS["q4_0"].pack({"d": d.numpy(), "q": q.to(torch.uint8).numpy()}).reshape(w.shape[0], -1)


def _reorder(data: np.ndarray, order: torch.Tensor | None) -> np.ndarray:
    return data if order is None else np.ascontiguousarray(data[..., order.numpy(), :])


def encode_tensor(spec: TensorSpec, qtype: str, record: QuantizedTensor | None,
                  imatrix: torch.Tensor | None) -> GGUFTensor:
    """Store one tensor: 1-D as F32, a record's codes packed as is, anything else quantized to `qtype`."""
    t = spec.tensor.detach().float().cpu()
    if spec.offset:
        t = t + spec.offset
    shape = tuple(t.shape)
    if t.ndim == 1:
        data = t.numpy() if spec.row_order is None else t[spec.row_order].numpy()
        return GGUFTensor(spec.gguf_name, "f32", np.ascontiguousarray(data), shape, spec.module)
    if record is not None:
        if tuple(record.shape) != shape:
            raise field_error(CheckpointError, f"record shape of {spec.module!r}", tuple(record.shape),
                              f"the weight's shape {shape}")
        qtype = record_type(record)
        data = _reorder(pack_qtensor(record, qtype), spec.row_order)
        return GGUFTensor(spec.gguf_name, qtype, data, shape, spec.module)
    rows = t.reshape(-1, shape[-1])
    if spec.row_order is not None:
        rows = t[spec.row_order]
    data = quantize_rows(rows, qtype, imatrix).reshape(*shape[:-1], -1)
    return GGUFTensor(spec.gguf_name, qtype, data, shape, spec.module)


def _wanted_types(model, mix: str) -> Iterator[tuple[TensorSpec, str]]:
    """(tensor, ggml type the mix rules ask for, before row fallbacks) for every tensor; 1-D tensors get f32."""
    mix = check_mix(mix)
    config = model.config
    n_layers = int(config.num_hidden_layers)
    n_gqa = config.num_attention_heads // (getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for spec in tensor_specs(model, get_arch(config)):
        qtype = "f32"
        if spec.tensor.ndim >= 2:
            qtype = wanted_type(mix, spec.gguf_name, n_layers, n_gqa, n_experts(config), tied)
        yield spec, qtype


def plan_types(model, mix: str = "q4_k_m") -> Iterator[tuple[TensorSpec, str]]:
    """(tensor, ggml type chosen by the mix rules, after row fallbacks) for every tensor of `model`; 1-D tensors
    get f32."""
    for spec, qtype in _wanted_types(model, mix):
        yield spec, (fallback(qtype, spec.tensor.shape[-1]) if spec.tensor.ndim >= 2 else qtype)


def rule_schemes(model, mix: str) -> dict[str, QuantScheme]:
    """The scheme of every 2-D weight module that `mix`'s per-tensor rules move off the mix's base type (llama.cpp's
    upgrades of attn_v, ffn_down, output, ...), before row fallbacks. AutoRound's layer plan starts from these and
    its shape rules apply the same fallbacks, so every tuned record has the ggml type write_gguf stores."""
    base = GGUF_MIXES[check_mix(mix)]
    return {spec.module: gguf_scheme(qtype) for spec, qtype in _wanted_types(model, mix)
            if spec.tensor.ndim == 2 and qtype != base}


def layer_types(model, mix: str = "q4_k_m") -> dict[str, str]:
    """ggml type per 2-D weight module (e.g. 'model.layers.0.mlp.down_proj' -> 'q6_k') that write_gguf uses;
    tune a layer with `ar_core.presets.gguf_scheme(type)` so its record is packed as is."""
    return {spec.module: qtype for spec, qtype in plan_types(model, mix) if spec.tensor.ndim == 2}


def layer_schemes(model, mix: str = "q4_k_m") -> dict[str, QuantScheme]:
    """The scheme to tune each 2-D weight with so write_gguf packs its record as is: the math of the layer's ggml
    type (after mix rules and row fallbacks), tagged gguf=<mix>; bf16 fallbacks get a 16-bit scheme."""
    mix = check_mix(mix)
    return {name: (gguf_scheme(qtype).replace(gguf=mix) if qtype in GGUF_TYPES else QuantScheme(bits=16))
            for name, qtype in layer_types(model, mix).items()}


def export_tensors(model, mix: str = "q4_k_m", quantized: dict[str, QuantizedTensor] | None = None,
                   imatrix: dict[str, torch.Tensor] | None = None) -> list[GGUFTensor]:
    """Every tensor of `model` as it goes into the GGUF file (names, types, bytes), without writing."""
    quantized, imatrix = quantized or {}, imatrix or {}
    out = []
    for spec, qtype in plan_types(model, mix):
        record = quantized.get(spec.module) if spec.tensor.ndim == 2 else None
        out.append(encode_tensor(spec, qtype, record, imatrix.get(spec.module)))
    return out


def dequantized_state_dict(model, tensors: list[GGUFTensor]) -> dict[str, torch.Tensor]:
    """HF-named float32 weights equal to what the GGUF file holds (undoing q/k re-ordering and norm offsets);
    load them into a copy of `model` to get "our dequantized model"."""
    arch = get_arch(model.config)
    by_name = {t.name: t for t in tensors}
    state = {}
    for spec in tensor_specs(model, arch):
        t = by_name[spec.gguf_name].dequantize()
        if spec.row_order is not None:
            t = t[torch.argsort(spec.row_order)] if t.ndim == 1 else t[..., torch.argsort(spec.row_order), :]
        if spec.offset:
            t = t - spec.offset
        if spec.gguf_name.endswith(("gate_exps.weight", "up_exps.weight")) and spec.hf_name in state:
            t = torch.cat([state[spec.hf_name], t], dim=-2)
        state[spec.hf_name] = t
    if getattr(model.config, "tie_word_embeddings", False) and "lm_head.weight" in model.state_dict():
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def write_gguf(model, tokenizer, out_path: str | os.PathLike, mix: str = "q4_k_m",
               quantized: dict[str, QuantizedTensor] | None = None,
               imatrix: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `model` (+ `tokenizer` metadata, skipped when None) as a GGUF file at `out_path`; returns the path.

    `quantized` maps HF module names to SignRound records, packed as is; other weights get optimized RTN with the
    per-tensor `mix` rules, weighted by `imatrix` (module name -> per-input-channel importance) when given.
    """
    return write_tensors(model, tokenizer, out_path, mix, export_tensors(model, mix, quantized, imatrix))


def write_tensors(model, tokenizer, out_path: str | os.PathLike, mix: str, tensors: list[GGUFTensor]) -> Path:
    """Write already encoded `tensors` (from export_tensors) with `model`'s hparams and `tokenizer`'s vocabulary.
    The file is written under a temporary name and renamed at the end."""
    mix = check_mix(mix)
    arch = get_arch(model.config)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        _write(model, tokenizer, tmp, mix, arch, tensors)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out_path)
    return out_path


def file_order(t: GGUFTensor) -> tuple[int, int, str]:
    """Order of tensors in the file, independent of how the model lists them: token embeddings, then blocks by
    number, then the rest (output norm, output), by name within each."""
    if t.name.startswith("blk."):
        return 1, int(t.name.split(".")[1]), t.name
    return (0 if t.name.startswith("token_embd") else 2), 0, t.name


def _write(model, tokenizer, path: Path, mix: str, arch, tensors: list[GGUFTensor]) -> None:
    w = gguf.GGUFWriter(path, arch.gguf_name)
    w.add_name(Path(str(getattr(model.config, "_name_or_path", "") or "model")).name or "model")
    w.add_file_type(int(getattr(gguf.LlamaFileType, FILE_TYPES[mix])))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_hparams(w, model.config, arch)
    if tokenizer is not None:
        write_tokenizer(w, tokenizer, int(model.config.vocab_size), model.config.model_type)
    else:
        write_special_ids(w, model.config)
    for t in sorted(tensors, key=file_order):
        if t.qtype in ("f32", "f16"):
            w.add_tensor(t.name, t.data)
        else:
            w.add_tensor(t.name, t.data, raw_shape=t.shape if t.qtype == "bf16" else None, raw_dtype=_GGML[t.qtype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
