"""Which stored tensors are quantizable layers, described as `LayerInfo` records for `resolve_plan`.

Preferred: the architecture is instantiated on the `meta` device (no weights, no memory) so layer kinds, blocks,
the LM head and tied embeddings are found exactly as the regular path finds them, and tensors are written in the
model's own order. When transformers does not know the architecture, the description falls back to tensor names
and shapes: every 2-D `*.weight` is a linear layer except embeddings, convolutions and norms; MoE routers
(`.gate`, `shared_expert_gate`, `router`) are marked so the plan keeps them 16-bit.

Importing transformers and building the meta model costs ~260 MiB that the process keeps, so when transformers is
not imported yet, `describe_source` runs in a short-lived child process that sends back only the layout and the
config dict; the caller's memory stays what the tensors need.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ar_core.errors import CheckpointError
from ar_core.layer_config import LayerInfo

from .source import Checkpoint

log = logging.getLogger("ar_algos.model_free")

HEAD_NAMES = ("lm_head", "head", "embed_out", "output")
SKIP_WORDS = ("embed", "conv", "wte", "wpe", "norm")
_FUSED = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}


@dataclass
class Layout:
    """The layers to plan, the LM head, whether it is tied, transposed (Conv1D) layers and the tensor order."""

    layers: list[LayerInfo]
    lm_head: str | None
    tied: bool
    transposed: set[str]
    order: list[str]


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


def _block_of(name: str) -> str | None:
    m = re.match(r"^(.*?\.\d+)\.", name)
    return m.group(1) if m else None


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
            kind="expert" if ".experts." in name else "linear", in_block=_block_of(name) is not None,
            is_router=name.endswith((".gate", "router", "shared_expert_gate")),
            fused_group=f"{parent}.{_FUSED[leaf]}" if leaf in _FUSED else None))
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
