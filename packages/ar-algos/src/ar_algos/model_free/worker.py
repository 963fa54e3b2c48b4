"""One worker's job: quantize the layers of one source shard with RTN and pack them with the format writer.

Tensors are read one at a time from the shard with plain file reads (no memory map) into one reused buffer and each
packed tensor's bytes are appended to the worker's part file as soon as it is made, so a worker holds one source
tensor and its packed output (plus the quantizer's temporaries), never its shard. The part file is raw bytes; the
result says where each tensor lies in it, or, for a tensor that goes out unchanged (embeddings, norms, 16-bit
layers), where it lies in the source file, so such a tensor is never read, written or copied twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ar_core.plan.types import scheme_from_dict
from ar_core.quant import quantize

from .context import ShapeContext
from .rtn import handles, quantize_rows
from .source import TensorMeta, TensorReader, append_tensor, read_header, torch_dtype


@dataclass
class ShardTask:
    """What to do with one shard: `quant` maps tensor key -> (layer name, transposed); `layers` describes every
    linear layer as (name, scheme dict, (out, in)) for the writer's context; other keys are copied (cast to dtype).
    `writer` is the format writer object (picklable: worker processes re-import its module)."""

    source: str
    target: str
    keys: list[str]
    quant: dict[str, tuple[str, bool]]
    layers: list[tuple[str, dict, tuple[int, int]]]
    writer: Any
    dtype: str


@dataclass
class ShardResult:
    """Output tensor names produced per source key (in order), where each lies (in the part file, or in the source
    file when kept unchanged), peak tensor bytes held and seconds spent."""

    target: str
    outputs: dict[str, list[str]] = field(default_factory=dict)
    stored: dict[str, TensorMeta] = field(default_factory=dict)
    peak_bytes: int = 0
    seconds: float = 0.0


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _pack(task: ShardTask, key: str, t: torch.Tensor, schemes: dict, ctx: ShapeContext) -> dict[str, torch.Tensor]:
    """The output tensors of source tensor `key`: its packed layer, or itself cast to the save dtype (`_kept_as_is`
    tensors never come here)."""
    if key not in task.quant:
        return {key: t.to(ctx.dtype)}
    name, transposed = task.quant[key]
    w, scheme = (t.t() if transposed else t), schemes[name]
    qt = quantize_rows(w, scheme) if handles(scheme) else quantize(w, scheme)
    return {f"{name}.{suffix}": v.contiguous() for suffix, v in task.writer.layer_tensors(name, qt, ctx).items()}


def _kept_as_is(task: ShardTask, meta: TensorMeta, dtype: torch.dtype) -> bool:
    """Whether source tensor `meta` goes to the output unchanged (not quantized, no cast to the save dtype)."""
    stored = torch_dtype(meta.dtype)
    return meta.name not in task.quant and (stored == dtype or not stored.is_floating_point)


def quantize_shard(task: ShardTask) -> ShardResult:
    """Run one ShardTask (also the entry point of worker processes). A tensor that goes to the output unchanged is
    neither read nor written here: its result entry points at its bytes in the source file, which the final writer
    copies from there."""
    start = time.perf_counter()
    built: dict[int, Any] = {}  # one QuantScheme per scheme dict (describe_layers shares equal ones)
    for _, d, _ in task.layers:
        if id(d) not in built:
            built[id(d)] = scheme_from_dict(d)
    layers = [(n, built[id(d)], tuple(shape)) for n, d, shape in task.layers]
    ctx = ShapeContext(layers, {}, getattr(torch, task.dtype))
    schemes = {n: s for n, s, _ in layers}
    result = ShardResult(task.target)
    source = read_header(task.source)
    with torch.inference_mode(), open(task.source, "rb") as src, open(task.target, "wb") as part:
        reader = TensorReader(src)
        for key in task.keys:
            if _kept_as_is(task, source[key], ctx.dtype):
                result.stored[key], result.outputs[key] = source[key], [key]
                continue
            t = reader.read(source[key])
            packed = _pack(task, key, t, schemes, ctx)
            held = _nbytes(t) + sum(_nbytes(v) for v in packed.values() if v is not t)
            result.peak_bytes = max(result.peak_bytes, held)
            for name, v in packed.items():
                result.stored[name] = append_tensor(part, name, v, task.target)
            result.outputs[key] = list(packed)
            del t, packed
    result.seconds = time.perf_counter() - start
    return result


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _forkserver_context():
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")  # workers fork from a server that imported this module once
    ctx.set_forkserver_preload([__name__])
    return ctx


def start_workers() -> None:
    """Start the fork server now (it imports this package in the background), so its start-up overlaps with the
    caller's planning instead of delaying the first task."""
    from multiprocessing import forkserver

    _forkserver_context()
    forkserver.ensure_running()


def run_tasks(tasks: list[ShardTask], workers: int) -> list[ShardResult]:
    """Run the tasks in this process (workers=1) or in a pool of `workers` processes (forked from a fresh server
    process, never from this one, so no thread state is inherited). Each worker gets an equal share of this
    process's torch threads (at least one), so together they use no more threads than this process would."""
    if workers <= 1 or len(tasks) <= 1:
        return [quantize_shard(t) for t in tasks]
    from concurrent.futures import ProcessPoolExecutor

    n = min(workers, len(tasks))
    with ProcessPoolExecutor(max_workers=n, mp_context=_forkserver_context(), initializer=_init_worker,
                             initargs=(max(torch.get_num_threads() // n, 1),)) as pool:
        return list(pool.map(quantize_shard, tasks))


def describe_layers(layers: list[tuple[str, Any, tuple[int, int]]]) -> list[tuple[str, dict, tuple[int, int]]]:
    """(name, QuantScheme, shape) -> picklable (name, scheme dict, shape); equal schemes share one dict."""
    dicts: dict[Any, dict] = {}
    for _, s, _ in layers:
        if s not in dicts:
            dicts[s] = s.to_dict()
    return [(n, dicts[s], tuple(shape)) for n, s, shape in layers]


def task_path(tmp: Path, index: int) -> str:
    """File a worker appends the packed tensors of source shard `index` to (raw bytes)."""
    return str(tmp / f"part-{index:05d}.bin")
