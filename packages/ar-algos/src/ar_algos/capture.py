"""Cache what each decoder block receives, without running the blocks.

Every block is swapped for a recorder that stores its keyword arguments (attention masks, position embeddings,
cache_position ... exactly as the model builds them) and passes the hidden states through untouched; the last one
stops the forward. So the cost is the embeddings only, and blocks with different masks (sliding-window layers) each
get their own. Arguments equal for every sample are stored once; the rest are stacked along the batch dimension.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ar_core.errors import DataError, field_error

from .blocks import get_module, set_module
from .placement import module_device

_DROP = ("past_key_values", "past_key_value", "layer_past")  # caches: the blocks run without them


class _Stop(Exception):
    """Raised by the last recorder to end the model's forward early."""


@dataclass
class BlockInputs:
    """Calibration inputs of the blocks: the first block's hidden states and every block's other arguments.

    hidden: [N, L, H] inputs of block 0; mask: [N, L] float token weights for the loss (0 on padding);
    shared[b]: arguments of block b equal for all samples; per_sample[b]: the rest, stacked along dim 0.
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    shared: list[dict[str, Any]]
    per_sample: list[dict[str, Any]]

    def kwargs(self, block: int, idx: torch.Tensor | slice) -> dict[str, Any]:
        """Keyword arguments for block `block` on the samples `idx`."""
        kw = dict(self.shared[block])
        for k, v in self.per_sample[block].items():
            kw[k] = _map(v, lambda t: t[idx])
        return kw

    def to(self, device: torch.device | str) -> "BlockInputs":
        """A copy with every tensor on `device` (tensors shared between blocks stay shared)."""
        memo: dict[int, Any] = {}

        def move(t):
            if id(t) not in memo:
                memo[id(t)] = t.to(device)
            return memo[id(t)]

        def move_all(d):
            return {k: _map(v, move) for k, v in d.items()}

        return BlockInputs(move(self.hidden), move(self.mask), [move_all(d) for d in self.shared],
                           [move_all(d) for d in self.per_sample])

    def grouped(self, size: int) -> "BlockInputs":
        """A view for groups of `size` consecutive blocks (see BlockGroup): group g's arguments are those of its
        blocks, named "j.<argument>" for its j-th block."""
        def merge(dicts: list[dict[str, Any]], start: int) -> dict[str, Any]:
            return {f"{j}.{k}": v for j, d in enumerate(dicts[start:start + size]) for k, v in d.items()}

        starts = range(0, len(self.shared), size)
        return BlockInputs(self.hidden, self.mask, [merge(self.shared, s) for s in starts],
                           [merge(self.per_sample, s) for s in starts])


def _map(v: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply `fn` to the tensors of a value that is a tensor or a (nested) tuple/list of tensors."""
    if isinstance(v, torch.Tensor):
        return fn(v)
    if isinstance(v, (tuple, list)):
        return type(v)(_map(x, fn) for x in v)
    return v


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and not isinstance(a, torch.Tensor) and a == b


def _stack(key: str, values: list[Any]) -> Any:
    first = values[0]
    if all(isinstance(v, torch.Tensor) for v in values):
        return torch.cat(values, dim=0)
    if all(isinstance(v, (tuple, list)) for v in values):
        return type(first)(_stack(key, [v[i] for v in values]) for i in range(len(first)))
    raise DataError(f"block argument {key!r} is {type(first).__name__} for some calibration samples and not for "
                    "others (the model skips the mask of unpadded samples); give samples that are all padded or "
                    "all unpadded (attention_mask all ones)")


def as_kwargs(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Bind a call's positional arguments to the names of `module.forward` (flattening **kwargs)."""
    bound = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments
    out: dict[str, Any] = {}
    params = inspect.signature(module.forward).parameters
    for name, value in bound.items():
        if params[name].kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


class _Recorder(nn.Module):
    """Stands in for a block during capture: records its arguments and returns the hidden states unchanged."""

    def __init__(self, inner: nn.Module, stop: bool, replay: torch.Tensor | None = None):
        super().__init__()
        self.__dict__["_inner"] = inner
        self.__dict__["_calls"] = []
        self.__dict__["_stop"] = stop
        self.__dict__["_replay"] = replay

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_inner"], name)

    def forward(self, *args, **kwargs):
        kw = as_kwargs(self._inner, args, kwargs)
        hidden_name = next(iter(inspect.signature(self._inner.forward).parameters))
        self._calls.append(kw)
        if self._stop:
            raise _Stop
        if self._replay is not None:
            h = kw[hidden_name]
            return self._replay[len(self._calls) - 1: len(self._calls)].to(h.device, h.dtype)
        return kw[hidden_name]


def ready_samples(samples: Any) -> list[dict[str, Any]]:
    """Check user-made model inputs (`samples=`): a non-empty list of dicts, each with input_ids [1, L] (the same L
    for all); a missing attention_mask becomes all ones. Every other key is passed to the model as is."""
    ok = isinstance(samples, (list, tuple)) and samples and all(
        isinstance(s, dict) and isinstance(s.get("input_ids"), torch.Tensor) and s["input_ids"].dim() == 2
        and s["input_ids"].shape[0] == 1 for s in samples)
    if not ok:
        raise field_error(DataError, "samples", type(samples).__name__, "a non-empty list of dicts of model inputs, "
                          "each with input_ids of shape [1, L] (e.g. a processor's output for one example)")
    lengths = sorted({s["input_ids"].shape[1] for s in samples})
    if len(lengths) > 1:
        raise field_error(DataError, "samples", f"input_ids lengths {lengths}", "one length for every sample "
                          "(pad them, with attention_mask 0 on the padding)")
    return [s if "attention_mask" in s else {**s, "attention_mask": torch.ones_like(s["input_ids"])}
            for s in samples]


def model_inputs(sample: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Every key of a calibration sample as a model input: tensors on `device`, floating ones in `dtype`
    (pixel_values and the like follow the model's dtype; token ids and masks keep theirs)."""
    return {k: _map(v, lambda t: t.to(device, dtype) if t.is_floating_point() else t.to(device))
            for k, v in sample.items()}


def _run_swapped(model: nn.Module, block_names: list[str], samples: list[dict], stop_last: bool,
                 replay: torch.Tensor | None = None, head: str | None = None) -> tuple[list[_Recorder], list]:
    """Forward each sample with the blocks swapped for recorders; returns the recorders and captured head inputs."""
    originals = [get_module(model, n) for n in block_names]
    recorders = [_Recorder(m, stop=stop_last and i == len(originals) - 1,
                           replay=replay if i == len(originals) - 1 else None) for i, m in enumerate(originals)]
    head_inputs: list[torch.Tensor] = []
    handle = None
    if head is not None:
        def grab(_module, args):
            head_inputs.append(args[0].detach())
            raise _Stop
        handle = get_module(model, head).register_forward_pre_hook(grab)
    first = next(model.parameters())
    try:
        for name, rec in zip(block_names, recorders):
            set_module(model, name, rec)
        with torch.no_grad():
            for s in samples:
                try:
                    model(**{**model_inputs(s, first.device, first.dtype), "use_cache": False})
                except _Stop:
                    pass
    finally:
        for name, orig in zip(block_names, originals):
            set_module(model, name, orig)
        if handle is not None:
            handle.remove()
    return recorders, head_inputs


def capture_block_inputs(model: nn.Module, block_names: list[str], samples: list[dict]) -> BlockInputs:
    """Run the embeddings on every sample and record the inputs of every block (one sample per forward)."""
    recorders, _ = _run_swapped(model, block_names, samples, stop_last=True)
    hidden_name = next(iter(inspect.signature(recorders[0]._inner.forward).parameters))
    hidden = torch.cat([kw[hidden_name] for kw in recorders[0]._calls], dim=0)
    shared, per_sample = [], []
    memo: dict[tuple, Any] = {}
    for rec in recorders:
        calls = rec._calls
        sh, ps = {}, {}
        for key in calls[0]:
            if key == hidden_name or key in _DROP:
                continue
            values = [c[key] for c in calls]
            if all(_same(values[0], v) for v in values[1:]):
                sh[key] = values[0]
            else:
                ident = (key, *map(id, values))
                if ident not in memo:
                    memo[ident] = _stack(key, values)
                ps[key] = memo[ident]
        if "use_cache" in sh:
            sh["use_cache"] = False
        shared.append(sh)
        per_sample.append(ps)
    mask = torch.cat([s["attention_mask"].float() for s in samples], dim=0).to(hidden.device)
    return BlockInputs(hidden=hidden, mask=mask, shared=shared, per_sample=per_sample)


def capture_head_inputs(model: nn.Module, block_names: list[str], head: str, last_hidden: torch.Tensor,
                        samples: list[dict]) -> torch.Tensor:
    """Inputs of the LM head when the last block outputs `last_hidden` ([N, L, H]): runs only the final norm."""
    _, head_inputs = _run_swapped(model, block_names, samples, stop_last=False, replay=last_hidden.cpu(), head=head)
    return torch.cat(head_inputs, dim=0)


def run_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """One forward of a block; returns its hidden-state output (first element when it returns a tuple)."""
    out = block(hidden, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


class BlockGroup(nn.ModuleList):
    """Consecutive blocks run as one (`nblocks`): block j takes the keyword arguments named "j.<argument>\"."""

    def forward(self, hidden: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The hidden-state output of the last block."""
        for j, block in enumerate(self):
            prefix = f"{j}."
            hidden = run_block(block, hidden, {k[len(prefix):]: v for k, v in kwargs.items() if k.startswith(prefix)})
        return hidden


def forward_all(block: nn.Module, inputs: BlockInputs, index: int, hidden: torch.Tensor,
                batch_size: int, out_device: torch.device | str | None = None) -> torch.Tensor:
    """Outputs of block `index` for every sample of `hidden` ([N, L, H]), in micro-batches, without gradients."""
    dev = module_device(block)
    outs = []
    with torch.no_grad():
        for start in range(0, hidden.shape[0], batch_size):
            idx = slice(start, start + batch_size)
            out = run_block(block, hidden[idx].to(dev), kwargs_to(inputs.kwargs(index, idx), dev))
            outs.append(out.to(out_device or hidden.device))
    return torch.cat(outs, dim=0)


def kwargs_to(kwargs: dict[str, Any], device) -> dict[str, Any]:
    """Block arguments with every tensor on `device`."""
    return {k: _map(v, lambda t: t.to(device)) for k, v in kwargs.items()}
