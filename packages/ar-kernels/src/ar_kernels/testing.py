"""Builders of random QuantizedTensor records per data type and an independent float64 reference decode.

Used by this package's tests and usable by exporter tests: `reference_weight(qt)` decodes codes with plain float64
arithmetic (no packing codec involved), so a backend that matches it reads its layout correctly.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ar_core.quant import quantize
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_int_qt(out_features: int, in_features: int, bits: int = 4, group_size=32, sym: bool = True,
                  seed: int = 0) -> QuantizedTensor:
    """RTN-quantized random weight (ar_core int math: full-range sym or asym)."""
    w = torch.randn(out_features, in_features, generator=_gen(seed)) * 0.05
    return quantize(w, QuantScheme(bits=bits, group_size=group_size, sym=sym))


def random_mx_qt(out_features: int, in_features: int, bits: int = 4, seed: int = 0) -> QuantizedTensor:
    """MXFP4 (E2M1 codes) or MXFP8 (E4M3 bit patterns) codes with power-of-two scales per 32 inputs."""
    g = _gen(seed)
    if bits == 4:
        codes = torch.randint(0, 16, (out_features, in_features), generator=g).to(torch.uint8)
    else:
        vals = (torch.randn(out_features, in_features, generator=g) * 50).clamp(-448, 448)
        codes = vals.to(torch.float8_e4m3fn).view(torch.uint8)
    groups = -(-in_features // 32)
    scale = torch.exp2(torch.randint(-10, -3, (out_features, groups), generator=g).float())
    return QuantizedTensor(codes=codes, scale=scale, zero=None, scheme=QuantScheme(bits=bits, group_size=32,
                           data_type="mx_fp"), shape=(out_features, in_features))


def random_nvfp4_qt(out_features: int, in_features: int, seed: int = 0) -> QuantizedTensor:
    """NVFP4 codes, E4M3-grid block scales per 16 inputs and a global scale."""
    g = _gen(seed)
    codes = torch.randint(0, 16, (out_features, in_features), generator=g).to(torch.uint8)
    raw = torch.rand(out_features, -(-in_features // 16), generator=g) * 400 + 1
    scale = raw.to(torch.float8_e4m3fn).float()
    return QuantizedTensor(codes=codes, scale=scale, zero=None, scheme=QuantScheme(bits=4, group_size=16,
                           data_type="nv_fp"), shape=(out_features, in_features),
                           extras={"global_scale": torch.tensor(448.0 * 6 / 0.3)})


def random_fp8_qt(out_features: int, in_features: int, group_size=-1, seed: int = 0) -> QuantizedTensor:
    """FP8 codes with a per-tensor (0), per-channel (-1), per-group (g) or per-block ((m, n)) scale."""
    g = _gen(seed)
    codes = (torch.randn(out_features, in_features, generator=g) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    if group_size == 0:
        shape = (1, 1)
    elif group_size == -1:
        shape = (out_features, 1)
    elif isinstance(group_size, tuple):
        shape = (-(-out_features // group_size[0]), -(-in_features // group_size[1]))
    else:
        shape = (out_features, -(-in_features // group_size))
    scale = torch.rand(shape, generator=g) * 1e-3 + 1e-4
    return QuantizedTensor(codes=codes, scale=scale, zero=None, scheme=QuantScheme(bits=8, group_size=group_size,
                           data_type="fp"), shape=(out_features, in_features))


def _per_input(t: torch.Tensor, group: int, in_features: int) -> torch.Tensor:
    return t.repeat_interleave(group, dim=1)[:, :in_features]


def reference_weight(qt: QuantizedTensor) -> torch.Tensor:
    """Float64 [out, in] weight of a record, decoded with plain arithmetic per the QuantizedTensor conventions."""
    s, (out, k) = qt.scheme, qt.shape
    scale = qt.scale.double()
    if s.data_type == "int":
        gs = s.effective_group_size(k)
        scale = scale.expand(out, -1)
        zero = qt.zero.double().expand(out, -1)
        return _per_input(scale, gs, k) * (qt.codes.double() - _per_input(zero, gs, k))
    if s.data_type in ("mx_fp", "mx_fp_rceil", "nv_fp") and s.bits == 4:
        c = qt.codes.long()
        vals = torch.where(c >= 8, -_E2M1[c & 7], _E2M1[c & 7])
        w = vals * _per_input(scale, s.group_size, k)
        if s.data_type == "nv_fp":
            w = w / float(qt.extras["global_scale"])
        return w
    codes = qt.codes.view(torch.float8_e4m3fn) if qt.codes.dtype == torch.uint8 else qt.codes
    vals = codes.double()
    if s.data_type.startswith("mx_fp"):
        return vals * _per_input(scale, 32, k)
    if scale.numel() == 1:
        return vals * scale.reshape(())
    if isinstance(s.group_size, tuple):
        m, n = s.group_size
        return vals * scale.repeat_interleave(m, 0).repeat_interleave(n, 1)[:out, :k]
    if s.group_size == -1:
        return vals * scale
    return vals * _per_input(scale, s.group_size, k)


def tiny_llama(hidden: int = 64, intermediate: int = 128, layers: int = 2, vocab: int = 256, seed: int = 0):
    """A random float32 LlamaForCausalLM small enough for unit tests (untied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def save_quantized(path: str | Path, model, layers: dict, qconfig: dict, state_hook=None):
    """Write `model` as a checkpoint with layers[name] = (QuantizedTensor, packing) packed by the torch modules.

    `qconfig` is merged into config.json (e.g. {"quantization_config": {...}}); `state_hook(state) -> state` may
    rewrite tensors first. Returns a float copy of `model` whose quantized weights are `reference_weight(qt)`.
    """
    from safetensors.torch import save_file

    from .qlinear import TORCH_MODULES

    path = Path(path)
    ref, packed = copy.deepcopy(model), copy.deepcopy(model)
    for name, (qt, packing) in layers.items():
        ref.get_submodule(name).weight.data = reference_weight(qt).float()
        packed.set_submodule(name, TORCH_MODULES[packing].from_quantized(qt, None, packing))
    state = {k: v.contiguous() for k, v in packed.state_dict().items()}
    if state_hook:
        state = state_hook(state)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(qconfig)
    (path / "config.json").write_text(json.dumps(cfg))
    return ref


def quantize_block_linears(model, bits: int = 4, group_size=32, sym: bool = True, packing: str = "gptq",
                           skip=(), bits_by_suffix: dict | None = None) -> dict:
    """(QuantizedTensor, packing) of random int codes for each Linear inside model.layers (minus `skip`)."""
    out = {}
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    for i, name in enumerate(names):
        if any(s in name for s in skip):
            continue
        b = (bits_by_suffix or {}).get(name.rsplit(".", 1)[1], bits)
        out[name] = (random_int_qt(*model.get_submodule(name).weight.shape, b, group_size, sym, seed=i), packing)
    return out
