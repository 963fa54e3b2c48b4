"""SignRound on one block: learn per-element rounding offsets V and per-group range scales (alpha, beta) by
sign-gradient descent so the block's quantized output matches its full-precision output.

Differences from the reference (cheap improvements): the candidates (RTN start, best-loss iterate, final iterate)
are compared on one fixed evaluation set instead of on different random mini-batches, so the last step is judged
too and the result is never worse than its start on that set; sym int layers start from the optimized-RTN
scales (`DataType.tuning_start`, imatrix-weighted) unless cfg.start_from_opt_rtn is off; the weights are never wrapped (a functional call swaps in
the fake-quantized weights); every random choice comes from (seed, block index), so a resumed run is identical.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from ar_core.qtensor import QuantizedTensor
from ar_core.quant import get_data_type, quantize
from ar_core.quant.train_qdq import TrainingQDQ, training_qdq
from ar_core.scheme import QuantScheme

from .blocks import as_stored, weight_key, weight_of, write_weight
from .capture import kwargs_to
from .config import TuneConfig
from .distributed import Shard, sum_float, sync_grads
from .placement import module_device
from .records import record_to_cpu

EVAL_SAMPLES = 64  # samples of the fixed set the candidates are compared on
LOSS_SCALE = 1000.0  # gradients are taken of loss * LOSS_SCALE (matters for Adam only)


@cache
def _cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively: AMX-BF16 or AVX512-BF16 among /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def fast_bf16(device: torch.device) -> bool:
    """Whether `amp` autocasts block forwards to bf16 on `device`: CUDA, or a CPU with AMX / AVX512-BF16 (a bf16
    matmul there is 2-3x faster than float32)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.backends.cpu.get_cpu_capability().startswith("AVX512") \
        and _cpu_has_fast_bf16()


def tunes_in_bf16(device: torch.device) -> bool:
    """Whether `amp` autocasts SignRound's tuning steps to bf16 on `device`: on CUDA only for now. On a CPU with
    native bf16 a step is ~2x faster, but SmolLM2-135M W2G32 (32x128 samples, 30 iterations, every block) reaches
    held-out ppl 1023 with it against 119 without, while its first 8 blocks alone are no worse (ppl 34.7 vs 35.1,
    KL 0.417 vs 0.408); the block where it breaks is not found yet. Opt-RTN's passes do use bf16 on such CPUs."""
    return device.type == "cuda"


def autocast_for(device: torch.device, dtype: torch.dtype, amp: bool):
    """The autocast context of a tuning step: bf16 (or the model's 16-bit dtype) when `amp` and the device has fast
    bf16, else no autocast. Losses, sign steps and best-state bookkeeping stay float32 either way."""
    if not (amp and fast_bf16(device)):
        return contextlib.nullcontext
    amp_dtype = dtype if dtype != torch.float32 else torch.bfloat16
    return lambda: torch.autocast(device.type, dtype=amp_dtype)


class SignSGD(torch.optim.Optimizer):
    """p <- p - lr * sign(grad)."""

    def __init__(self, params, lr: float = 1e-3):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        """One signed step of every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


@dataclass
class _Layer:
    """One tuned layer: its fp32 weight [out, in], scheme and learnable V / alpha / beta."""

    layer: nn.Module
    key: str
    scheme: QuantScheme
    w: torch.Tensor
    v: torch.Tensor
    alpha: torch.Tensor | None
    beta: torch.Tensor | None
    start: dict  # data-type options of the starting point (e.g. a searched init_scale); empty: plain RTN
    qdq: TrainingQDQ  # (v, min_scale, max_scale) -> fake-quantized weight, equal to fake_quantize's

    def params(self) -> list[torch.Tensor]:
        """The learnable tensors of this layer."""
        return [p for p in (self.v, self.alpha, self.beta) if p is not None]


@dataclass
class BlockResult:
    """Records of a block's layers and its loss before (RTN) and after tuning (on the fixed evaluation set)."""

    records: dict[str, QuantizedTensor]
    loss_before: float | None = None
    loss_after: float | None = None
    outputs: torch.Tensor | None = None  # the block's outputs on every sample with the written weights (when kept)


def masked_mse(pred: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, tokens: float | None = None) -> torch.Tensor:
    """Mean squared error over the tokens with mask 1 (pred/ref [B, L, H], mask [B, L]), in float32; `tokens`: the
    denominator's token count when the batch is split over ranks (default: mask's sum)."""
    m = mask.to(pred.device, torch.float32).unsqueeze(-1)
    diff = (pred.float() - ref.float()) * m
    count = m.sum() if tokens is None else torch.tensor(tokens, device=pred.device)
    return diff.pow(2).sum() / (count * pred.shape[-1]).clamp(min=1)


def _make_layer(layer: nn.Module, key: str, scheme: QuantScheme, minmax: bool, searched: bool,
                imatrix: torch.Tensor | None) -> _Layer:
    w = weight_of(layer).detach().float()
    dt = get_data_type(scheme.data_type)
    wg = dt.group(w, scheme)
    rows, groups, gs = wg.shape
    start = dt.tuning_start(wg, scheme, imatrix) if searched else {}
    v = torch.zeros(rows, groups, gs, device=w.device, requires_grad=True)
    ab = [torch.ones(rows, groups, device=w.device, requires_grad=True) for _ in range(2)] if minmax else [None] * 2
    return _Layer(layer, key, scheme, w, v, *ab, start, training_qdq(w, scheme, **start))


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _rank(candidate: tuple) -> tuple[float, int]:
    return candidate[0], candidate[2]


def _index_stream(n: int, batch: int, gen: torch.Generator):
    """Endless batches of sample indices: a shuffled pass, reshuffled once fewer than `batch` remain."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch + 1, batch):
            yield perm[start:start + batch]


def signround_block(block: nn.Module, layers: dict[str, nn.Module], schemes: dict[str, QuantScheme],
                    inputs: torch.Tensor, target: Callable[[torch.Tensor], torch.Tensor],
                    kwargs: Callable[[torch.Tensor], dict], mask: torch.Tensor, cfg: TuneConfig,
                    seed: int, imatrix: dict[str, torch.Tensor] | None = None,
                    keep_outputs: bool = False, shard: Shard | None = None) -> BlockResult:
    """Tune the quantized layers of `block` (their names in `schemes`) and write their QDQ weights back.

    inputs: [N, L, H] what the block receives (quantized chain); target(idx): the full-precision outputs to match
    for samples idx; kwargs(idx): the block's other arguments; mask: [N, L] token weights; seed: this block's seed;
    imatrix: per-layer input-channel energy that weights the optimized-RTN start (cfg.start_from_opt_rtn);
    keep_outputs: return the block's outputs on `inputs` (BlockResult.outputs) when the candidates' evaluation
    already computes them (at most EVAL_SAMPLES samples), so the caller need not run the block again.
    shard: the global samples this rank holds (`ar_algos.distributed`): indices are then global, inputs / target /
    kwargs / mask local, and losses and gradients are summed over the ranks (outputs are then never kept).
    """
    dev = module_device(block)
    imatrix = imatrix or {}
    tuned = {n: _make_layer(layers[n], weight_key(n), s, cfg.enable_minmax_tuning, cfg.start_from_opt_rtn,
                            imatrix.get(n)) for n, s in schemes.items()}
    qdqs = {n: torch.compile(t.qdq, dynamic=False) if cfg.enable_torch_compile else t.qdq for n, t in tuned.items()}
    dtype = next(block.parameters()).dtype
    autocast = autocast_for(dev, dtype, cfg.amp and tunes_in_bf16(dev))

    def weights() -> dict[str, torch.Tensor]:
        return {t.key: as_stored(t.layer, qdqs[n](t.v, t.alpha, t.beta).to(dtype)) for n, t in tuned.items()}

    def output_on(idx: torch.Tensor, amp: bool) -> torch.Tensor:
        with autocast() if amp else contextlib.nullcontext():
            out = functional_call(block, weights(), (inputs[idx].to(dev),), kwargs_to(kwargs(idx), dev))
        return out[0] if isinstance(out, (tuple, list)) else out

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        tokens, idx = (shard.tokens(idx), shard.local(idx)) if shard else (None, idx)
        if len(idx) == 0:  # none of these samples is on this rank
            return torch.zeros((), device=dev, requires_grad=True)
        return masked_mse(output_on(idx, True), target(idx).to(dev), mask[idx], tokens)

    n = shard.total if shard else inputs.shape[0]
    eval_idx = torch.arange(min(n, EVAL_SAMPLES))
    keep = keep_outputs and shard is None and n <= EVAL_SAMPLES

    def evaluate() -> tuple[float, torch.Tensor | None]:
        """(loss on the fixed set, the outputs on every sample when kept), in the model's dtype (no autocast)."""
        total, outs = 0.0, []
        with torch.no_grad():
            for s in range(0, len(eval_idx), cfg.batch_size):
                idx = eval_idx[s:s + cfg.batch_size]
                tokens, local = (shard.tokens(idx), shard.local(idx)) if shard else (None, idx)
                if len(local) == 0:  # none of these samples is on this rank
                    continue
                out = output_on(local, False)
                total += masked_mse(out, target(local).to(dev), mask[local], tokens).item() * len(idx)
                if keep:
                    outs.append(out.to(inputs.device))
        return sum_float(total) / len(eval_idx), torch.cat(outs) if keep else None

    def snapshot() -> list[torch.Tensor]:
        return [p.detach().clone() for t in tuned.values() for p in t.params()]

    def restore(state: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip((p for t in tuned.values() for p in t.params()), state):
                p.copy_(s)

    frozen = {p: p.requires_grad for p in block.parameters()}
    for p in frozen:
        p.requires_grad_(False)
    try:
        start = snapshot()
        loss_before, out_before = evaluate()
        best_state, last = _tune(tuned, cfg, n, seed, loss_on, snapshot, shard is not None)
        # candidates ranked by (loss, preference): the final iterate, the best mini-batch iterate, the start; the
        # best iterate is evaluated only when it is neither of the others; only the leader's outputs are kept
        chosen = (*evaluate(), 0, last)
        if not cfg.not_use_best_mse:
            chosen = min(chosen, (loss_before, out_before, 2, start), key=_rank)
            del out_before
            if best_state is not None and not (_same(best_state, last) or _same(best_state, start)):
                restore(best_state)
                chosen = min(chosen, (*evaluate(), 1, best_state), key=_rank)
        loss_after, outputs, _, state = chosen
        restore(state)
    finally:
        for p, flag in frozen.items():
            p.requires_grad_(flag)
    records = {}
    with torch.no_grad():
        for name, t in tuned.items():
            qt = quantize(t.w, t.scheme, v=t.v, min_scale=t.alpha, max_scale=t.beta, **t.start)
            write_weight(t.layer, qt.dequantize())
            records[name] = record_to_cpu(qt)
    return BlockResult(records, loss_before, loss_after, outputs)


def _tune(tuned: dict[str, _Layer], cfg: TuneConfig, n: int, seed: int, loss_on, snapshot, sync: bool = False):
    """The optimisation loop; returns (the state of the best mini-batch loss, the final state). `sync`: sum
    gradients and losses over the ranks before each step."""
    groups: dict[float, list[torch.Tensor]] = {}
    for t in tuned.values():
        groups.setdefault(cfg.layer_lr(t.scheme.bits), []).append(t.v)
        for p in (t.alpha, t.beta):
            if p is not None:
                groups.setdefault(cfg.layer_minmax_lr(t.scheme.bits), []).append(p)
    param_groups = [{"params": ps, "lr": lr} for lr, ps in groups.items()]
    opt = torch.optim.AdamW(param_groups, weight_decay=0.0) if cfg.enable_adam else SignSGD(param_groups)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=cfg.iters)
    gen = torch.Generator().manual_seed(seed)
    global_batch = min(n, cfg.batch_size * cfg.gradient_accumulate_steps)
    batches = _index_stream(n, global_batch, gen)
    best_loss, best_state, best_iter = float("inf"), None, 0
    for it in range(cfg.iters):
        idx = next(batches)
        total = 0.0
        for s in range(0, global_batch, cfg.batch_size):
            micro = idx[s:s + cfg.batch_size]
            loss = loss_on(micro) * (len(micro) / global_batch)
            (loss * LOSS_SCALE).backward()
            total += loss.item()
        if sync:
            total = sync_grads([p for t in tuned.values() for p in t.params()], total)
        if total < best_loss:
            best_loss, best_state, best_iter = total, snapshot(), it
        elif cfg.dynamic_max_gap > 0 and it - best_iter >= cfg.dynamic_max_gap:
            break
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    return best_state, snapshot()
