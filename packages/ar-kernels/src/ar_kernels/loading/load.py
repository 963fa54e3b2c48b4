"""`load`: build a transformers model from a quantized checkpoint with QuantLinear layers from chosen backends."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from pathlib import Path

import torch
from torch import nn

from ar_core.errors import CheckpointError
from ar_core.layouts import get_layout
from ar_core.remote_code import remote_code_guard
from ar_core.rotation import restore_rotation

from ..backends import select_backend
from ..hf_quantizer import enable_transformers_integration
from ..qlinear.act import InputQuant
from .auto import from_config
from .checkpoint import CheckpointReader
from .plan import LayerPlan, plan_layers, quant_method

log = logging.getLogger(__name__)

_QUANT_SUFFIXES = ("qweight", "qzeros", "scales", "biases", "weight_packed", "weight_scale", "weight_zero_point",
                   "weight_global_scale", "g_idx", "weight_scale_inv")


def quantization_config(path: str | Path) -> dict:
    """The quantization dict of a checkpoint's config.json (quantization_config, else mlx's `quantization`)."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{str(path)!r} has no config.json")
    cfg = json.loads(cfg_file.read_text())
    q = cfg.get("quantization_config") or cfg.get("quantization")
    if not isinstance(q, dict):
        raise CheckpointError(f"{str(cfg_file)!r} has no quantization_config (or mlx quantization) dict")
    if "quant_method" not in q and "quantization" in cfg:
        q = cfg["quantization"]
    return q


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _stored_kind(tensors: dict[str, torch.Tensor]) -> str:
    if "qweight" in tensors:
        return "qweight"
    if "weight_packed" in tensors:
        return "weight_packed"
    if "scales" in tensors and "biases" in tensors:
        return "mlx"
    w = tensors.get("weight")
    if w is None:
        return "nothing"
    if w.dtype == torch.int8:
        return "int8"
    return "float8" if w.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else "float"


def _check_consistent(name: str, plan: LayerPlan | None, tensors: dict, method: str) -> None:
    kind = _stored_kind(tensors)
    if plan is None:
        if kind not in ("float", "nothing"):
            raise CheckpointError(f"layer {name!r}: the {method} quantization_config leaves it unquantized but the "
                                  f"checkpoint stores quantized tensors {sorted(tensors)}")
        return
    want = get_layout(plan.packing).stores
    if kind != want:
        s = plan.scheme
        raise CheckpointError(f"layer {name!r}: the {method} quantization_config says {s.data_type} {s.bits}-bit "
                              f"group_size={s.group_size} (packing {plan.packing!r}, expects {want} tensors) but the "
                              f"checkpoint stores {kind} tensors {sorted(tensors)}")


def find_blocks(model: nn.Module) -> list[str]:
    """Names of the outermost nn.ModuleLists whose entries hold Linear layers (the repeated decoder blocks)."""
    blocks: list[str] = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or any(name.startswith(b + ".") for b in blocks):
            continue
        if any(isinstance(m, nn.Linear) for m in mod.modules()):
            blocks.append(name)
    return blocks


def _skeleton(config, dtype: torch.dtype, trust_remote_code: bool) -> nn.Module:
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        return from_config(config, dtype, trust_remote_code)


def meta_skeleton(config, trust_remote_code: bool = False) -> nn.Module:
    """The CausalLM (or vision-language model, see loading.auto) of `config` on the meta device (no memory, no
    init; quantization_config dropped), in the config's dtype (float32 when absent) -- enough to read layer names
    and shapes."""
    config = copy.deepcopy(config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dtype = getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with torch.device("meta"):
        return from_config(config, dtype, trust_remote_code)


def build_layer(name: str, plan: LayerPlan, tensors: dict, in_features: int, out_features: int,
                device: torch.device, backend: str | None, dtype: torch.dtype):
    """Select a backend for one layer and build its QuantLinear; returns (module, backend name, reason)."""
    qt, packing = None, plan.packing
    if packing in ("pack_quantized", "int_quantized"):  # served as GPTQ order with raw zeros
        qt = get_layout(packing).from_tensors(tensors, plan.scheme, in_features, out_features, name)
        packing = "gptq_v2"
        if plan.packing == "int_quantized":  # compressed-tensors holds weight_scale in the model's dtype
            qt.scale = qt.scale.to(dtype).float()
    scheme = plan.scheme if qt is None else qt.scheme
    chosen, reason = select_backend(scheme, packing, device, in_features, out_features, backend,
                                    layer=name, dtype=dtype)
    cls = chosen.module_class(packing)
    if qt is not None:
        module = cls.from_quantized(qt, tensors.get("bias"), packing)
    else:
        module = cls.from_tensors(tensors, in_features, out_features, scheme, packing, layer=name)
    if plan.act is not None:
        module.input_quant = InputQuant.from_tensors(plan.act, tensors, name)
    return module, chosen.name, reason


def load(path: str | Path, device: str | torch.device = "cpu", backend: str | None = None,
         dtype: torch.dtype | str | None = None, cache_weight: bool = False, trust_remote_code: bool = False):
    """Load a quantized checkpoint directory into a transformers CausalLM (or vision-language model: the class is
    picked from the config by `ar_kernels.loading.auto.model_class`) whose Linear layers are QuantLinears; layers
    whose config quantizes activations quantize their inputs as the format's consumer does (qlinear.act).

    device: "cpu", "cuda", ... or "auto"; backend: a backend name to force (default: best per layer); dtype:
    compute dtype of the model (default: the config's dtype, float32 when absent). `model.ar_backends` maps each
    quantized layer to (backend, reason). A `rotation_config` in the quantization config re-inserts the run's online
    rotations (ar_core.rotation). Raises CheckpointError when config and tensors disagree. Also installs the
    transformers integration (`ar_kernels.hf_quantizer`), so from_pretrained of the same folder loads it alike.
    """
    from transformers import AutoConfig

    enable_transformers_integration()
    path = Path(path)
    q = quantization_config(path)
    with remote_code_guard(path, trust_remote_code):
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    device = resolve_device(device)
    dtype = dtype or getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = _skeleton(config, dtype, trust_remote_code)
    reader = CheckpointReader(path)
    plans, consumed = install_quantized_layers(model, reader, q, device, backend, dtype, cache_weight)
    _load_rest(model, reader, consumed, plans)
    if q.get("rotation_config"):  # a rotated run: the online Hadamards its weights expect
        restore_rotation(model, q["rotation_config"])
    log.info("loaded %s: %d quantized layers", path, len(model.ar_backends))
    return model.to(device).eval()


def install_quantized_layers(model: nn.Module, reader: CheckpointReader, q: dict, device: torch.device,
                             backend: str | None, dtype: torch.dtype, cache_weight: bool = False):
    """Replace the model's quantized Linear layers by QuantLinears built from the checkpoint's tensors.

    Sets `model.ar_backends` (layer -> (backend, reason)); returns (plans, names of the tensors consumed).
    """
    linears = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    has_scales = {k.rpartition(".")[0] for k in reader.keys() if k.endswith(".scales")}
    plans = plan_layers(q, linears, find_blocks(model), has_scales)
    consumed: set[str] = set()
    model.ar_backends = {}
    for name, plan in plans.items():
        tensors = reader.local(name)
        _check_consistent(name, plan, tensors, quant_method(q))
        if plan is None:
            continue
        module, chosen, reason = build_layer(name, plan, tensors, *linears[name], device, backend, dtype)
        module.cache_weight = cache_weight
        model.set_submodule(name, module)
        model.ar_backends[name] = (chosen, reason)
        consumed.update(f"{name}.{k}" for k in tensors)
    return plans, consumed


def _load_rest(model: nn.Module, reader: CheckpointReader, consumed: set[str], plans: dict) -> None:
    rest = {}
    for key in reader.keys():
        if key in consumed:
            continue
        if key.rpartition(".")[2] in _QUANT_SUFFIXES:
            raise CheckpointError(f"tensor {key!r} looks quantized but belongs to no quantized Linear of the model "
                                  "(quantized embeddings and other non-Linear layers are not supported)")
        rest[key] = reader.get(key)
    missing, _ = model.load_state_dict(rest, strict=False)
    if getattr(model.config, "tie_word_embeddings", False) and plans.get("lm_head") is None:
        model.tie_weights()
    loaded = {p.data_ptr() for k, p in model.state_dict().items() if k in rest}
    state = model.state_dict()
    quantized = {n for n, plan in plans.items() if plan is not None}
    really_missing = [k for k in missing if k.rpartition(".")[0] not in quantized and k in state
                      and state[k].data_ptr() not in loaded]
    if really_missing:
        raise CheckpointError(f"checkpoint lacks tensors the model needs: {really_missing[:8]}"
                              + (" ..." if len(really_missing) > 8 else ""))
