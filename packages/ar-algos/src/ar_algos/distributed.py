"""Data-parallel quantization on torch.distributed: every rank holds the block being tuned and a contiguous slice of
the calibration samples; what the ranks compute on their slices is summed (gradients, losses, imatrix and AWQ
statistics) or maxed (activation ranges) so that every rank takes the same decisions and holds the same weights.

Launch with `torchrun` (`ar_cli` calls `init_from_torchrun`) or call the Python API inside an initialised process
group (gloo on CPU, NCCL on GPUs); with no process group, or one of size 1, every function here is a no-op and the
code paths are those of one process. Rank 0 alone writes checkpoints and outputs; the others wait at a barrier.

Equal to one process with the same global batch up to the order of float summation: a micro-batch's squared error
is summed per rank and then across ranks, instead of in one sum, so results agree to float rounding (a sign step on
a gradient element that is ~0 may differ), not guaranteed bit for bit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from ar_core.errors import ArError, CheckpointError
from ar_core.io import atomic_output_dir, check_output_dir

from .checkpoint import WorkDir


def active() -> bool:
    """Whether this process is one rank of an initialised process group of two or more ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes outputs and prints progress (rank 0, or the only process)."""
    return rank() == 0


def init_from_torchrun() -> bool:
    """Join the process group torchrun describes (its RANK / WORLD_SIZE / MASTER_ADDR variables): NCCL with one GPU
    per local rank when CUDA is available, gloo otherwise. Returns whether a group of 2+ ranks is now active."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2 or dist.is_initialized():
        return active()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return active()


@contextmanager
def torchrun_group() -> Iterator[bool]:
    """`init_from_torchrun` for the length of the block (yields whether 2+ ranks are active); the group this made is
    destroyed on the way out."""
    made = not dist.is_initialized() and init_from_torchrun()
    try:
        yield active()
    finally:
        if made:
            dist.destroy_process_group()


def collective(op: Callable, *args: Any, **kwargs: Any) -> Any:
    """`op(*args, **kwargs)`, a torch.distributed collective; its failure (a rank died or lost its connection) becomes
    an ArError that says how to resume."""
    try:
        return op(*args, **kwargs)
    except RuntimeError as exc:
        first = (str(exc).splitlines() or [""])[0][:300]
        raise ArError(f"rank {rank()} of {world_size()}: another rank stopped or lost its connection during "
                      f"{op.__name__} ({type(exc).__name__}: {first}); rank 0 keeps the finished blocks in the work "
                      "directory (work_dir, or <output_dir>.work): run the same command again, with any number of "
                      "ranks, to resume") from exc


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def local_slice(n: int) -> slice:
    """This rank's contiguous part of `n` samples (sizes differ by at most one, in rank order)."""
    r, w = rank(), world_size()
    return slice(r * n // w, (r + 1) * n // w)


def check_samples(n: int) -> None:
    """ArError when `n` calibration samples cannot give every rank at least one."""
    if active() and n < world_size():
        raise ArError(f"nsamples={n} is fewer than the {world_size()} ranks; give at least one sample per rank")


def local_rows(rows: Any) -> Any:
    """This rank's part of a list or of a tensor's first dimension (everything when not distributed)."""
    return rows if not active() or rows is None else rows[local_slice(len(rows))]


@dataclass
class Shard:
    """The samples [lo, hi) of `total` this rank holds, and every sample's token mask ([total, L], on the CPU) for
    the loss denominators that span ranks."""

    lo: int
    hi: int
    total: int
    mask: torch.Tensor

    def local(self, idx: torch.Tensor) -> torch.Tensor:
        """Positions in this rank's tensors of the global sample indices `idx` it holds (in `idx`'s order)."""
        idx = torch.as_tensor(idx)
        return idx[(idx >= self.lo) & (idx < self.hi)] - self.lo

    def tokens(self, idx: torch.Tensor) -> float:
        """Tokens (mask sum) of the global samples `idx`, on all ranks together."""
        return float(self.mask[torch.as_tensor(idx)].sum())


def make_shard(local_mask: torch.Tensor, total: int) -> Shard | None:
    """This rank's Shard, given the token mask of its samples (None when not distributed)."""
    if not active():
        return None
    parts: list[Any] = [None] * world_size()
    collective(dist.all_gather_object, parts, local_mask.detach().float().cpu())
    part = local_slice(total)
    return Shard(part.start, part.stop, total, torch.cat(parts))


def _reduce(t: torch.Tensor, op: str) -> torch.Tensor:
    buf = t.detach().to(_comm_device(), copy=True)
    collective(dist.all_reduce, buf, dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return buf.to(t.device)


def sum_float(x: float) -> float:
    """`x` summed over the ranks (as float64)."""
    return float(_reduce(torch.tensor([x], dtype=torch.float64), "sum")) if active() else x


def reduce_stats(stats: dict[str, torch.Tensor] | None, op: str) -> dict[str, torch.Tensor] | None:
    """Per-layer statistics combined over the ranks ("sum": imatrix; "max": activation ranges); a layer some ranks
    never saw counts as zeros there."""
    if not active() or stats is None:
        return stats
    shapes: list[Any] = [None] * world_size()
    collective(dist.all_gather_object, shapes, {n: (tuple(t.shape), t.dtype) for n, t in stats.items()})
    union = {n: s for d in shapes for n, s in d.items()}
    out = {}
    for name in sorted(union):
        shape, dtype = union[name]
        mine = stats.get(name)
        out[name] = _reduce(mine if mine is not None else torch.zeros(shape, dtype=dtype), op)
    return out


def sum_scores(scores: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-name lists of floats (AutoScheme's layer scores) summed over the ranks, in float64."""
    if not active():
        return scores
    names = sorted(scores)
    flat = _reduce(torch.tensor([x for n in names for x in scores[n]], dtype=torch.float64), "sum").tolist()
    out, start = {}, 0
    for n in names:
        out[n] = flat[start:start + len(scores[n])]
        start += len(scores[n])
    return out


def global_mse(pred: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    """Masked mean squared error over the samples of all ranks (each rank passes its own)."""
    m = mask.to(pred.device, torch.float32).unsqueeze(-1)
    sse = ((pred.float() - ref.float()) * m).pow(2).sum().double().cpu()
    count = (m.sum() * pred.shape[-1]).double().cpu()
    both = _reduce(torch.stack([sse, count]), "sum") if active() else torch.stack([sse, count])
    return float(both[0] / both[1].clamp(min=1))


def sync_grads(params: list[torch.Tensor], loss: float) -> float:
    """Sum the gradients of `params` (missing ones count as zeros) and the mini-batch `loss` over the ranks, one
    parameter at a time (no flat copy of the block's gradients); every rank then holds the same gradients. Returns
    the summed loss."""
    for p in params:
        p.grad = _reduce(p.grad if p.grad is not None else torch.zeros_like(p), "sum")
    return sum_float(loss)


def gather_rows(t: torch.Tensor) -> torch.Tensor | None:
    """Every rank's `t` concatenated along dim 0 in rank order, on rank 0 (None on the others)."""
    if not active():
        return t
    sizes = [torch.zeros(1, dtype=torch.int64, device=_comm_device()) for _ in range(world_size())]
    collective(dist.all_gather, sizes, torch.tensor([t.shape[0]], dtype=torch.int64, device=_comm_device()))
    top = int(max(s.item() for s in sizes))
    buf = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=_comm_device())
    buf[:t.shape[0]] = t.detach()
    parts = [torch.empty_like(buf) for _ in sizes] if is_main() else None
    collective(dist.gather, buf, parts, dst=0)
    if not is_main():
        return None
    return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)]).to(t.device)


def barrier() -> None:
    """Wait for every rank (nothing when not distributed)."""
    if active():
        collective(dist.barrier)


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    if not active():
        return value
    box = [value]
    collective(dist.broadcast_object_list, box, src=0)
    return box[0]


def on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only, then let every rank continue; an error on rank 0 is raised on every rank. Returns
    rank 0's result on rank 0, None elsewhere."""
    if not active():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as exc:  # re-raised below, after the other ranks heard of it
            error = exc
    message = broadcast(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise ArError(f"rank 0 failed: {message}")
    return result


class FollowerWork(WorkDir):
    """Another rank's view of rank 0's work directory: reads finished blocks and the chain, writes nothing."""

    def __init__(self, path: Any, fingerprint: dict[str, str], done: int):  # no lock: rank 0 holds it
        self.path, self.fingerprint, self.done, self.made_folder = path, fingerprint, done, False

    def release(self) -> None:
        """Nothing to release (rank 0 holds the lock)."""

    def remove(self) -> None:
        """Nothing to remove (rank 0 does)."""


def open_work(make: Callable[[], WorkDir]) -> WorkDir:
    """The work directory: made (locked, fingerprint checked) by rank 0; a FollowerWork of it on the other ranks."""
    work = on_main(make)
    state = broadcast(None if work is None else (work.path, work.fingerprint, work.done))
    if work is not None:
        return work
    if state is None:
        raise CheckpointError("rank 0 opened no work directory")
    return FollowerWork(*state)


def save_block(work: WorkDir, index: int, records: dict, chain: dict[str, torch.Tensor]) -> None:
    """Checkpoint block `index`: the chain gathered from every rank, written by rank 0 while the others wait."""
    full = {k: gather_rows(v) for k, v in chain.items()}
    on_main(lambda: work.save_block(index, records, full))


@contextmanager
def main_output_dir(path: Any, overwrite: bool) -> Iterator[Path | None]:
    """`atomic_output_dir` on rank 0 (None on the others, which only check `path`); every rank leaves once rank 0
    has put the output in place."""
    if not active():
        with atomic_output_dir(path, overwrite=overwrite) as out:
            yield out
        return
    check_output_dir(path, overwrite)
    if is_main():
        with atomic_output_dir(path, overwrite=overwrite) as out:
            yield out
    else:
        yield None
    barrier()


@contextmanager
def shared_tempdir(prefix: str, parent: Path) -> Iterator[Path]:
    """A temporary folder in `parent` (a folder every rank sees) made by rank 0, its name given to every rank;
    removed by rank 0 once every rank is done with it."""
    path = Path(broadcast(tempfile.mkdtemp(prefix=prefix, dir=parent) if is_main() else None))
    try:
        yield path
        barrier()
    finally:
        if is_main():
            shutil.rmtree(path, ignore_errors=True)


def spread_tasks(tasks: list, run: Callable[[list], list]) -> list:
    """`run` this rank's share of `tasks` (every world_size-th, from its rank); every rank gets all the results."""
    if not active():
        return run(tasks)
    parts: list[Any] = [None] * world_size()
    collective(dist.all_gather_object, parts, run(tasks[rank()::world_size()]))
    return [r for part in parts for r in part]
