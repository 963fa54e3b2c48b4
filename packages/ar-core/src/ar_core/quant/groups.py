"""Reshape a 2-D weight into quantization groups and back (zero-padding rows that do not divide the group)."""

from __future__ import annotations

import torch


def group_count(in_features: int, group_size: int) -> int:
    """Groups per row for a layer with `in_features` inputs and a (resolved) group length."""
    return -(-in_features // group_size)


def resolve_group_size(group_size, in_features: int) -> int:
    """-1 (per channel), 0 (per tensor: handled by the caller) or a size larger than the row -> one group per row."""
    if isinstance(group_size, tuple):
        return group_size[1]
    if group_size in (-1, 0) or group_size > in_features:
        return in_features
    return group_size


def to_groups(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """[out, in] -> [out, G, group_size], zero-padding the tail group."""
    out, cols = w.shape
    g = group_count(cols, group_size)
    pad = g * group_size - cols
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(out, g, group_size)


def from_groups(wg: torch.Tensor, in_features: int) -> torch.Tensor:
    """[out, G, group_size] -> [out, in], dropping the padding."""
    out = wg.shape[0]
    return wg.reshape(out, -1)[:, :in_features]
