"""`quantize_model_free`: RTN straight from safetensors shards to a packed checkpoint, without loading the model.

    result = quantize_model_free("path/to/model", "out/model-w4", scheme="W4A16", workers=4)

The plan comes from config.json and the safetensors headers (`layers.describe_checkpoint`). Each source shard is
one task (split into runs of tensors when there are more workers than shards): a worker reads its tensors one by
one, quantizes the planned layers with plain RTN (what the regular path does for iters=0, disable_opt_rtn=True) and
packs them with the registered format writer's own per-layer packing, so the bytes match the regular path's export.
The parts are then streamed into the final shards inside an atomic output directory. For the families the header
planner knows, this process never imports transformers, and it never holds a whole output shard.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ar_core.errors import ArError, SchemeError, field_error
from ar_core.layer_config import Plan, resolve_plan
from ar_core.presets import parse_scheme
from ar_core.registry import FORMATS
from ar_core.scheme import QuantScheme

from ..config import make_config
from ..distributed import main_output_dir, shared_tempdir, spread_tasks
from ..preflight import plan_notes
from ..run_info import run_info
from .context import ShapeContext
from .layers import describe_checkpoint
from .layout import Layout
from .output import copy_side_files, write_tensors
from .source import TORCH_DTYPES, Checkpoint, read_checkpoint
from .worker import ShardTask, describe_layers, run_tasks, start_workers, task_path

log = logging.getLogger("ar_algos.model_free")
SUPPORTED = "int weight-only with bits 2/4/8 (sym or asym, any group size), MXFP4/MXFP8 (mx_fp, group 32) or 16-bit"
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


@dataclass
class ModelFreeResult:
    """Where the checkpoint went, the plan used, wall seconds, the peak tensor bytes a worker held and the bytes
    the final shard writer held at once (its copy buffer), and the largest source shard for comparison."""

    path: Path
    plan: Plan
    seconds: float
    worker_peak_bytes: int
    output_peak_bytes: int
    largest_source_shard_bytes: int


def supported(s: QuantScheme) -> bool:
    """Whether model-free mode can produce layers quantized with `s`."""
    if not s.is_quantized:
        return True
    if s.data_type == "int":
        return s.bits in (2, 4, 8) and not s.quantizes_activations
    return s.data_type == "mx_fp" and s.bits in (4, 8)


def _check_schemes(plan: Plan) -> None:
    for name, s in plan.schemes().items():
        if not supported(s):
            raise field_error(SchemeError, f"scheme of layer {name!r}", s.to_dict(),
                              f"model-free mode supports {SUPPORTED}; use the regular path (AutoRound) for it")


def regular_run_info() -> dict[str, Any]:
    """The run_info the regular path (AutoRound with iters=0, disable_opt_rtn=True) hands to the writer."""
    return run_info(make_config(iters=0, disable_opt_rtn=True))


def _model_dtype(ckpt: Checkpoint, layout: Layout) -> torch.dtype:
    for key in layout.order:
        if ckpt.tensors[key].dtype in FLOAT_DTYPES:
            return TORCH_DTYPES[ckpt.tensors[key].dtype]
    return torch.float16


def split_keys(keys: list[str], sizes: dict[str, int], parts: int) -> list[list[str]]:
    """`keys` cut into at most `parts` non-empty runs (order kept) of about equal total size."""
    total, runs, used = sum(sizes[k] for k in keys), [[]], 0
    for k in keys:
        if runs[-1] and len(runs) < parts and used + sizes[k] / 2 >= total * len(runs) / parts:
            runs.append([])
        runs[-1].append(k)
        used += sizes[k]
    return [r for r in runs if r]


def _tasks(ckpt: Checkpoint, layout: Layout, plan: Plan, writer: Any, dtype: torch.dtype, tmp: Path,
           layers: list, workers: int) -> list[ShardTask]:
    """One task per source shard, or, with more workers than shards, each shard's tensors split into runs of
    about equal bytes so that every worker gets work (a one-file checkpoint too)."""
    quant = {f"{n}.weight": (n, n in layout.transposed) for n in plan.quantized()}
    sizes = {k: t.nbytes for k, t in ckpt.tensors.items()}
    pieces = -(-workers // len(ckpt.shards))
    tasks = []
    for shard in ckpt.shards:
        for keys in split_keys([k for k in layout.order if ckpt.tensors[k].shard == shard], sizes, pieces):
            tasks.append(ShardTask(str(ckpt.path / shard), task_path(tmp, len(tasks)), keys,
                                   {k: quant[k] for k in keys if k in quant}, layers, writer,
                                   str(dtype).removeprefix("torch.")))
    return tasks


def _read(model_dir, scheme, layer_config, ignore_layers, quant_lm_head, format, use_meta):
    """(checkpoint, layout, plan, config dict) of a model directory, without loading any weight."""
    ckpt = read_checkpoint(model_dir)
    layout, config = describe_checkpoint(ckpt, use_meta)
    plan = resolve_plan(layout.layers, parse_scheme(scheme), layer_config=layer_config, ignore_layers=ignore_layers,
                        quant_lm_head=quant_lm_head, tied_embeddings=layout.tied, lm_head_name=layout.lm_head,
                        format=format)
    return ckpt, layout, plan, config


def fits_model_free(model_dir: str | Path, scheme: Any = "W4A16", layer_config: dict | None = None,
                    ignore_layers: Any = None, quant_lm_head: bool = False, format: str = "auto_round",
                    use_meta: bool = True) -> bool:
    """Whether every layer's planned scheme is one model-free mode can produce (bad configs raise ArError)."""
    _, _, plan, _ = _read(model_dir, scheme, layer_config, ignore_layers, quant_lm_head, format, use_meta)
    return all(supported(s) for s in plan.schemes().values())


def quantize_model_free(model_dir: str | Path, output_dir: str | Path, scheme: Any = "W4A16",
                        layer_config: dict | None = None, ignore_layers: Any = None, quant_lm_head: bool = False,
                        format: str = "auto_round", workers: int = 1, max_shard_size: int | str = "5GB",
                        overwrite: bool = False, use_meta: bool = True) -> ModelFreeResult:
    """Quantize the checkpoint in `model_dir` with RTN and write it to `output_dir` in `format`.

    scheme / layer_config / ignore_layers / quant_lm_head: as for AutoRound (resolved by ar_core's resolve_plan
    over layers described from the checkpoint; routers, embeddings, norms and the LM head stay 16-bit by default).
    workers: processes quantizing shards in parallel (1 = in this process). Bad input raises ArError first.
    """
    start = time.perf_counter()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise field_error(ArError, "workers", workers, "an int >= 1 (worker processes)")
    if workers > 1:
        start_workers()
    writer = FORMATS.get(format)
    ckpt, layout, plan, config = _read(model_dir, scheme, layer_config, ignore_layers, quant_lm_head, format, use_meta)
    _check_schemes(plan)
    writer.check({n: s for n, s in plan.schemes().items() if s.is_quantized})
    for note in plan_notes(layout.layers, plan):
        log.warning(note)
    layers = [(x.name, plan.entries[x.name].scheme, (x.out_features, x.in_features)) for x in layout.layers]
    ctx = ShapeContext(layers, regular_run_info(), torch.float32)
    for name, qt in ctx.quantized.items():
        writer.check_layer(name, qt)
    ctx.dtype = writer.save_dtype(ctx.quantized) or _model_dtype(ckpt, layout)
    out_parent = Path(output_dir).absolute().parent
    out_parent.mkdir(parents=True, exist_ok=True)
    # under torchrun the ranks share the shards (a folder all of them see) and rank 0 alone writes the output
    with main_output_dir(output_dir, overwrite) as out, shared_tempdir(".model-free-parts-", out_parent) as parts:
        tasks = _tasks(ckpt, layout, plan, writer, ctx.dtype, Path(parts), describe_layers(layers), workers)
        results = {r.target: r for r in spread_tasks(tasks, lambda mine: run_tasks(mine, workers))}
        target = {key: task.target for task in tasks for key in task.keys}
        stored = {n: results[target[key]].stored[n] for key in layout.order for n in results[target[key]].outputs[key]}
        out_peak = 0 if out is None else write_tensors(stored, out, max_shard_size)
        if out is not None:
            writer.write_config(config, writer.quant_config(ctx), ctx, out)
            copy_side_files(ckpt.path, out)
    return ModelFreeResult(Path(output_dir), plan, time.perf_counter() - start,
                           max(r.peak_bytes for r in results.values()), out_peak,
                           max(ckpt.shard_bytes(s) for s in ckpt.shards))

