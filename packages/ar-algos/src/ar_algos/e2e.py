"""End-to-end distillation after the block pass: keep every quantized layer's integer codes and tune its scales (and
the zero points of asym layers) so that the quantized model's next-token distribution matches the 16-bit model's.

In the spirit of mlx-lm's DWQ and EfficientQAT's end-to-end step. The loss is KL(teacher || student) on the
calibration tokens. The teacher's log-probabilities are computed once, before the block pass, and kept as the top
`e2e_topk` entries per token plus the rest of the probability mass as one bucket (exact when topk covers the
vocabulary; otherwise the KL between the two distributions coarsened to those buckets, a lower bound of the full KL).
Each int layer's scale becomes `s0 * (1 + d)` with a learned per-group `d` (cast through the scheme's scale dtype in
every forward, as exported); an asym layer's zero point becomes `clamp(round(z0 + dz), 0, 2^bits - 1)` with a
straight-through rounding. Layers of other data types (power-of-two, E4M3 or double-quantized scales) are kept.
Every decoder block runs under gradient checkpointing, so activations are held for one block at a time.
The candidates (start, end) are compared on the calibration set; the better one is kept, so the stage never makes
the calibration KL worse. Each step draws its samples from (seed, step) alone and the tuned tensors and the Adam
state are checkpointed to the work directory after every step, so a resumed run ends with identical tensors.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ar_core.qtensor import QuantizedTensor
from ar_core.quant import get_data_type
from ar_core.quant.base import cast_scale
from ar_core.quant.ste import round_ste

from .blocks import get_module, set_module, write_weight
from .capture import model_inputs
from .checkpoint import WorkDir
from .config import TuneConfig
from .progress import Progress
from .records import record_to_cpu

DEFAULT_STEPS = 100  # `ar quantize --e2e`: steps of batch_size samples (about half a 200-iteration block pass)
TEACHER_FILE = "teacher.pt"
STATE_FILE = "e2e.pt"
ZERO_LR_RATIO = 10.0  # zero points move in integer levels, scales by relative amounts: lr(dz) = this * e2e_lr
REPORT_EVERY = 10  # a progress line every this many steps (and after the last)


def tunable(qt: QuantizedTensor) -> bool:
    """Whether the e2e stage tunes this record: int weight-only (sym or asym integer zero point)."""
    return qt.scheme.data_type == "int" and not qt.scheme.quantizes_activations and qt.zero is not None


class ScaledCodes(nn.Module):
    """A linear layer that computes its weight from fixed integer codes and learnable scale / zero offsets."""

    def __init__(self, linear: nn.Module, qt: QuantizedTensor, device: torch.device):
        super().__init__()
        self.scheme, self.shape, self.bias = qt.scheme, tuple(qt.shape), linear.bias
        self.dtype = linear.weight.dtype
        self.dt = get_data_type(qt.scheme.data_type)
        self.register_buffer("codes", self.dt.group(qt.codes.to(device), qt.scheme), persistent=False)
        self.register_buffer("s0", qt.scale.to(device, torch.float32), persistent=False)
        self.register_buffer("z0", qt.zero.to(device, torch.float32), persistent=False)
        self.d = nn.Parameter(torch.zeros_like(self.s0))
        self.dz = None if qt.scheme.sym else nn.Parameter(torch.zeros_like(self.z0))

    def scale_zero(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current (scale, zero) as exported: scale through the scale dtype, zero an integer in range."""
        scale = cast_scale(self.s0 * (1 + self.d), self.scheme)
        if self.dz is None:
            return scale, self.z0
        return scale, round_ste(self.z0 + self.dz).clamp(0, 2 ** self.scheme.bits - 1)

    def weight_now(self) -> torch.Tensor:
        """The float32 [out, in] weight of the current parameters."""
        scale, zero = self.scale_zero()
        return self.dt.ungroup(self.dt.decode(self.codes, scale, zero, {}, self.scheme), self.shape, self.scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b with W dequantized from the codes."""
        return F.linear(x, self.weight_now().to(x.dtype), self.bias)

    def record(self, qt: QuantizedTensor) -> QuantizedTensor:
        """`qt` with the tuned scale and zero (same codes, same tensors' dtypes)."""
        with torch.no_grad():
            scale, zero = self.scale_zero()
        return record_to_cpu(QuantizedTensor(codes=qt.codes, scale=scale.to(qt.scale.dtype), zero=zero.to(
            qt.zero.dtype), scheme=qt.scheme, shape=qt.shape, extras=qt.extras))


def token_kl(logits: torch.Tensor, t_logp: torch.Tensor, t_idx: torch.Tensor) -> torch.Tensor:
    """Per-token KL(teacher || student) [T] over the teacher's top-k buckets plus one tail bucket.

    logits: student [T, V]; t_logp / t_idx: the teacher's top-k log-probabilities and their token ids [T, k]."""
    logq = F.log_softmax(logits.float(), dim=-1)
    q_sel = logq.gather(-1, t_idx.long())
    p = t_logp.exp()
    kl = (p * (t_logp - q_sel)).sum(-1)
    p_tail = (1 - p.sum(-1)).clamp(min=0)
    q_tail = (1 - q_sel.exp().sum(-1)).clamp(min=1e-12)
    tail = torch.where(p_tail > 0, p_tail * (p_tail.clamp(min=1e-12).log() - q_tail.log()), torch.zeros_like(p_tail))
    return kl + tail


def _logits(model: nn.Module, sample: dict, device: torch.device) -> torch.Tensor:
    dtype = next(model.parameters()).dtype
    out = model(**model_inputs(sample, device, dtype), use_cache=False)
    return (out.logits if hasattr(out, "logits") else out[0])[0]


@torch.no_grad()
def teacher_topk(model: nn.Module, samples: list[dict], topk: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The 16-bit model's top-`topk` log-probabilities and token ids per calibration token: {"logp": [N, L, k]
    float32, "idx": [N, L, k] int32} on the CPU."""
    logps, idxs = [], []
    for sample in samples:
        logp = F.log_softmax(_logits(model, sample, device).float(), dim=-1)
        values, idx = logp.topk(min(topk, logp.shape[-1]), dim=-1)
        logps.append(values.cpu())
        idxs.append(idx.to(torch.int32).cpu())
    return {"logp": torch.stack(logps), "idx": torch.stack(idxs)}


def load_or_make_teacher(model: nn.Module, samples: list[dict], cfg: TuneConfig, device: torch.device,
                         work: WorkDir | None) -> dict[str, torch.Tensor]:
    """The teacher's top-k, from the work directory when an earlier try of this run saved it, else computed from
    `model` (which must still be the 16-bit model) and saved there."""
    if work is not None and work.has_file(TEACHER_FILE):
        return work.load_file(TEACHER_FILE)
    teacher = teacher_topk(model, samples, cfg.e2e_topk, device)
    if work is not None:
        work.save_file(TEACHER_FILE, teacher)
    return teacher


@contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[None]:
    """While active, `model` is on `device`; afterwards it goes back to where its first parameter was."""
    home = next(model.parameters()).device
    model.to(device)
    try:
        yield
    finally:
        model.to(home)


@contextmanager
def checkpointed(blocks: list[nn.Module]) -> Iterator[None]:
    """While active, every block's forward recomputes its activations in the backward pass instead of keeping
    them (torch.utils.checkpoint, non-reentrant)."""
    for block in blocks:
        forward = block.forward
        block.forward = lambda *a, _f=forward, **k: checkpoint(_f, *a, use_reentrant=False, **k)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


@contextmanager
def swapped(model: nn.Module, records: dict[str, QuantizedTensor],
            device: torch.device) -> Iterator[dict[str, ScaledCodes]]:
    """While active, each tunable layer of `records` is a `ScaledCodes` module (yielded by name); the original
    modules come back afterwards."""
    originals = {n: get_module(model, n) for n, qt in records.items() if tunable(qt)}
    layers = {n: ScaledCodes(m, records[n], device) for n, m in originals.items()}
    for n, layer in layers.items():
        set_module(model, n, layer)
    try:
        yield layers
    finally:
        for n, m in originals.items():
            set_module(model, n, m)


def _step_indices(n: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """The samples of step `step`: a function of (seed, step) alone, so a resumed run draws the same ones."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randperm(n, generator=gen)[:batch]


def _sample_kl(model: nn.Module, sample: dict, teacher: dict, i: int, device: torch.device) -> torch.Tensor:
    kl = token_kl(_logits(model, sample, device), teacher["logp"][i].to(device), teacher["idx"][i].to(device))
    mask = sample["attention_mask"][0].to(device, torch.float32)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def mean_kl(model: nn.Module, samples: list[dict], teacher: dict, device: torch.device) -> float:
    """Mean per-sample KL to the teacher over every calibration sample."""
    return sum(_sample_kl(model, s, teacher, i, device).item() for i, s in enumerate(samples)) / len(samples)


def _params(layers: dict[str, ScaledCodes]) -> dict[str, dict[str, torch.Tensor]]:
    return {n: {k: p.detach().cpu().clone() for k, p in (("d", m.d), ("dz", m.dz)) if p is not None}
            for n, m in layers.items()}


def _load_params(layers: dict[str, ScaledCodes], state: dict[str, dict[str, torch.Tensor]]) -> None:
    with torch.no_grad():
        for n, m in layers.items():
            m.d.copy_(state[n]["d"])
            if m.dz is not None:
                m.dz.copy_(state[n]["dz"])


def train_step(model: nn.Module, samples: list[dict], teacher: dict, idx: torch.Tensor, opt: torch.optim.Optimizer,
               device: torch.device) -> float:
    """One Adam step on the samples `idx` (one sample per forward, gradients accumulated); returns their mean KL."""
    total = 0.0
    for i in idx.tolist():
        loss = _sample_kl(model, samples[i], teacher, i, device) / len(idx)
        loss.backward()
        total += loss.item()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total


def distill(model: nn.Module, block_names: list[str], records: dict[str, QuantizedTensor], samples: list[dict],
            teacher: dict[str, torch.Tensor], cfg: TuneConfig, device: torch.device, work: WorkDir | None = None,
            progress: Progress | None = None) -> tuple[dict[str, QuantizedTensor], dict[str, Any]]:
    """Tune the scales (and asym zero points) of the tunable layers in `records` for `cfg.e2e_steps` steps of
    `cfg.batch_size` samples; write the dequantized weights into `model`; return (the new records, a summary:
    kl_before, kl_after, steps, seconds, kept). Codes never change. `work`: resume from / checkpoint to it."""
    tick = time.perf_counter()
    if not any(tunable(qt) for qt in records.values()):
        if progress:
            progress.note("e2e: no int weight-only layer to tune (other data types keep their scales); skipped")
        return records, {"kl_before": None, "kl_after": None, "steps": 0, "kept": False, "layers": 0, "seconds": 0.0}
    frozen = {p: p.requires_grad for p in model.parameters()}
    for p in frozen:
        p.requires_grad_(False)
    blocks = [get_module(model, b) for b in block_names]
    try:
        with swapped(model, records, device) as layers, checkpointed(blocks):
            summary = _run(model, layers, samples, teacher, cfg, device, work, progress)
            new = {n: (layers[n].record(qt) if n in layers else qt) for n, qt in records.items()}
    finally:
        for p, flag in frozen.items():
            p.requires_grad_(flag)
    for n in layers:
        write_weight(get_module(model, n), new[n].dequantize())
    summary["seconds"] = time.perf_counter() - tick
    return new, summary


def _run(model, layers, samples, teacher, cfg, device, work, progress) -> dict[str, Any]:
    """The loop of `distill` (inside the swapped, checkpointed model)."""
    scales = [m.d for m in layers.values()]
    zeros = [m.dz for m in layers.values() if m.dz is not None]
    groups = [{"params": scales, "lr": cfg.e2e_lr}] + ([{"params": zeros, "lr": cfg.e2e_lr * ZERO_LR_RATIO}]
                                                       if zeros else [])
    opt = torch.optim.Adam(groups)
    state = work.load_file(STATE_FILE) if work is not None and work.has_file(STATE_FILE) else None
    if state is None:
        start = _params(layers)
        kl_before = mean_kl(model, samples, teacher, device)
        state = {"step": 0, "start": start, "kl_before": kl_before, "params": start, "opt": None}
    else:
        _load_params(layers, state["params"])
        if state["opt"] is not None:
            opt.load_state_dict(state["opt"])
        if progress:
            progress.note(f"e2e: resuming at step {state['step'] + 1}/{cfg.e2e_steps} from {work.path}")
    batch = min(cfg.batch_size, len(samples))
    for step in range(state["step"], cfg.e2e_steps):
        t = time.perf_counter()
        loss = train_step(model, samples, teacher, _step_indices(len(samples), batch, cfg.seed, step), opt, device)
        state = {**state, "step": step + 1, "params": _params(layers), "opt": opt.state_dict()}
        if work is not None:
            work.save_file(STATE_FILE, state)
        if progress and ((step + 1) % REPORT_EVERY == 0 or step + 1 == cfg.e2e_steps):
            progress.block(step, time.perf_counter() - t, None, loss)
    kl_after = mean_kl(model, samples, teacher, device)
    kept = kl_after <= state["kl_before"]
    if not kept:
        _load_params(layers, state["start"])
    if progress:
        progress.note(f"e2e: calibration KL {state['kl_before']:.4g} -> {kl_after:.4g}"
                      f"{'' if kept else ' (worse: the block-pass scales are kept)'}")
    return {"kl_before": state["kl_before"], "kl_after": min(kl_after, state["kl_before"]), "steps": cfg.e2e_steps,
            "kept": kept, "layers": len(layers)}
