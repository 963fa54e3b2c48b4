"""The free-space check before a run: the saved model's size estimated from the plan's bits, plus the block
checkpoints of the work directory, against the free space of the filesystems they go to."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ar_core.bits import layer_bits
from ar_core.scheme import QuantScheme
from ar_core.space import check_free_space, existing_parent


def expected_bytes(model: nn.Module, schemes: dict[str, QuantScheme]) -> tuple[int, int]:
    """(bytes of one saved checkpoint, bytes of the block checkpoints) for `model` with its quantized layers'
    `schemes`: codes and scales per the schemes' bits, every other tensor as it is (tied tensors once); the block
    checkpoints hold at least a byte per quantized weight."""
    total = records = 0
    seen = set()
    for key, t in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in schemes and leaf == "weight" and t.dim() == 2:
            lb = layer_bits(schemes[module], tuple(t.shape))
            total += int(lb.total_bits * lb.elements) // 8
            records += t.numel()
            continue
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.device.type != "meta" and ident not in seen:
            seen.add(ident)
            total += t.numel() * t.element_size()
    return total, records


def check_space(model: nn.Module, schemes: dict[str, QuantScheme], output_dir: str | Path, formats: int,
                work_dir: str | Path | None) -> None:
    """CheckpointError before any work when `output_dir` (one checkpoint per format) and `work_dir` (None: no
    block checkpoints) cannot both fit on their filesystems."""
    out, records = expected_bytes(model, schemes)
    out *= formats
    if work_dir is None:
        check_free_space(output_dir, out, f"the quantized model ({formats} format(s))")
        return
    same = os.stat(existing_parent(output_dir)).st_dev == os.stat(existing_parent(work_dir)).st_dev
    if same:
        check_free_space(output_dir, out + records, "the quantized model and the block checkpoints of work_dir "
                         f"{str(work_dir)!r}")
        return
    check_free_space(output_dir, out, f"the quantized model ({formats} format(s))")
    check_free_space(work_dir, records, "the block checkpoints")
