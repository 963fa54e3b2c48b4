"""Which stored tensors are quantizable layers, described as `LayerInfo` records for `resolve_plan`.

`describe_checkpoint` plans from config.json and the safetensors headers alone (`headers.py`) for the families whose
module order and layer kinds it knows. Any other checkpoint falls back, with a log line saying so, to instantiating
the architecture on the `meta` device (no weights), so layer kinds, blocks, the LM head and the tensor order are found
exactly as the regular path finds them; when transformers does not know the architecture either, the description
falls back to tensor names and shapes: every 2-D `*.weight` is a linear layer except embeddings, convolutions and
norms; MoE routers (`.gate`, `shared_expert_gate`, `router`) are marked so the plan keeps them 16-bit.

Importing transformers and building the meta model costs ~260 MiB that the process keeps, so when transformers is
not imported yet, the meta fallback runs in a short-lived child process that sends back only the layout and the
config dict; the caller's memory stays what the tensors need.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from ar_core.errors import CheckpointError
from ar_core.layer_config import LayerInfo

from .headers import FAMILIES, config_dict, describe_headers, installed_transformers
from .layout import FUSED, Layout, block_of
from .source import Checkpoint

log = logging.getLogger("ar_algos.model_free")

HEAD_NAMES = ("lm_head", "head", "embed_out", "output")
SKIP_WORDS = ("embed", "conv", "wte", "wpe", "norm")


def describe(ckpt: Checkpoint, use_meta: bool = True) -> Layout:
    """The layout of `ckpt`: from a meta-device model when possible (and `use_meta`), else from tensor shapes.
    A model's own code (config.json auto_map) never runs here: such a model is described from its tensors."""
    if use_meta:
        try:
            return _from_meta(ckpt)
        except Exception as exc:  # unknown architecture or custom code: names and shapes still work
            why = "model-free mode does not run a model's own code" if "trust_remote_code" in str(exc) else exc
            log.warning("model-free: cannot build %s on the meta device (%s); using tensor names and shapes",
                        ckpt.config.get("architectures"), why)
    return _from_shapes(ckpt)


def _from_meta(ckpt: Checkpoint) -> Layout:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..blocks import find_blocks, find_lm_head, has_tied_head
    from ..moe import unfuse_experts
    from ..plan import layer_infos

    config = AutoConfig.from_pretrained(str(ckpt.path), trust_remote_code=False)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    unfuse_experts(model)
    blocks = find_blocks(model)
    lm_head = find_lm_head(model, blocks)
    every = layer_infos(model, blocks)
    infos = [x for x in every if f"{x.name}.weight" in ckpt.tensors or x.name == lm_head]
    kept = {x.name for x in infos}
    missing = [x.name for x in every if x.name not in kept]
    if missing:
        log.warning("model-free: %d layers have no stored '<name>.weight' tensor (e.g. %s); their tensors are "
                    "copied unquantized", len(missing), missing[0])
    tied = has_tied_head(model)
    transposed = {x.name for x in infos if x.kind == "conv1d"}
    keys = list(model.state_dict().keys())
    order = [k for k in keys if k in ckpt.tensors]
    if tied and lm_head is not None:
        order = [k for k in order if k != f"{lm_head}.weight"]
    order += [k for k in ckpt.tensors if k not in set(order) and not (tied and k == f"{lm_head}.weight")]
    return Layout(infos, lm_head, tied, transposed, order)


def _from_shapes(ckpt: Checkpoint) -> Layout:
    tied = bool(ckpt.config.get("tie_word_embeddings", False))
    infos = []
    for key, meta in ckpt.tensors.items():
        if not key.endswith(".weight") or len(meta.shape) != 2:
            continue
        name = key.removesuffix(".weight")
        leaf = name.rpartition(".")[2]
        if any(w in leaf.lower() for w in SKIP_WORDS) or "embed" in name.lower():
            continue
        parent = name.rpartition(".")[0]
        infos.append(LayerInfo(
            name=name, in_features=meta.shape[1], out_features=meta.shape[0],
            kind="expert" if ".experts." in name else "linear", in_block=block_of(name) is not None,
            is_router=name.endswith((".gate", "router", "shared_expert_gate")),
            fused_group=f"{parent}.{FUSED[leaf]}" if leaf in FUSED else None))
    heads = [x.name for x in infos if not x.in_block and x.name.rpartition(".")[2] in HEAD_NAMES]
    return Layout(infos, heads[-1] if heads else None, tied, set(), list(ckpt.tensors))


def source_config(path: Path, raw: dict) -> dict:
    """The config dict as transformers writes it (falls back to the raw config.json for unknown architectures)."""
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path), trust_remote_code=False).to_dict()
    except (ValueError, KeyError, OSError):
        return dict(raw)


def describe_source(ckpt: Checkpoint, use_meta: bool = True) -> tuple[Layout, dict]:
    """The layout of `ckpt` (see `describe`) and its config dict as transformers writes it (`source_config`)."""
    return describe(ckpt, use_meta), source_config(ckpt.path, ckpt.config)


def describe_apart(ckpt: Checkpoint, use_meta: bool = True) -> tuple[Layout, dict]:
    """`describe_source` in a short-lived child Python when this process has not imported transformers (so it never
    does), else here (the import is paid already and a meta model holds no weights). The child is a plain
    subprocess, not a multiprocessing one, so the caller's main script is never re-imported."""
    if "transformers" in sys.modules:
        return describe_source(ckpt, use_meta)
    with tempfile.TemporaryDirectory(prefix="ar-model-free-plan-") as tmp:
        result = Path(tmp) / "layout.pkl"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        code = f"from {__name__} import describe_child; describe_child({str(result)!r})"
        proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((ckpt, use_meta)), env=env)
        if proc.returncode != 0:
            raise CheckpointError(f"model-free: describing the layers of {str(ckpt.path)!r} in a child process "
                                  f"failed (exit status {proc.returncode}, its error is printed above)")
        return pickle.loads(result.read_bytes())


def describe_child(result: str) -> None:
    """Entry of the child process of `describe_apart`: (checkpoint, use_meta) pickled on stdin, the result pickled
    into the file `result`."""
    ckpt, use_meta = pickle.load(sys.stdin.buffer)
    Path(result).write_bytes(pickle.dumps(describe_source(ckpt, use_meta)))


def describe_checkpoint(ckpt: Checkpoint, use_meta: bool = True) -> tuple[Layout, dict]:
    """The layout of `ckpt` and its config dict as transformers writes it, from config.json and the safetensors
    headers when `headers.py` knows the family and the transformers version that wrote config.json; else the meta
    model (`describe_apart`; `use_meta=False`: tensor names and shapes) and transformers' AutoConfig, saying so."""
    layout = describe_headers(ckpt) if use_meta else _from_shapes(ckpt)
    if layout is None:
        log.warning("model-free: planning from a meta-device model (slower): model_type %r is not one whose module "
                    "order and layer kinds the header planner knows (%s), or a tensor name is not one of that "
                    "family's", ckpt.config.get("model_type"), ", ".join(sorted(FAMILIES)))
        return describe_apart(ckpt, use_meta)
    config = config_dict(ckpt)
    if config is None:
        log.warning("model-free: config.json was written by transformers %s, not the installed %s (or holds custom "
                    "code): reading it with transformers' AutoConfig", ckpt.config.get("transformers_version"),
                    installed_transformers())
        config = source_config(ckpt.path, ckpt.config)
    return layout, config
