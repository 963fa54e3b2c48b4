"""The block-by-block driver: cache the first block's inputs, then quantize one block at a time on the device.

Chains (reference §1.3): with enable_quanted_input each block is trained to map the quantized-so-far input `q`
to the full-precision chain's output `fp`, and `q` moves on through the quantized block; otherwise both are the
full-precision chain. The quantized (QDQ) weights are written into the model, so later blocks see them.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

from .act_max import any_needs_act_max, attach_act_max, collect_act_max, needs_act_max, static_layers
from .blocks import find_linears, get_module, weight_of, write_weight
from .awq import awq_block
from .capture import BlockGroup, BlockInputs, capture_block_inputs, capture_head_inputs, forward_all, kwargs_to
from .checkpoint import WorkDir
from .config import TuneConfig
from .distributed import Shard, global_mse, local_rows, make_shard, reduce_stats, save_block
from .placement import DeviceMap, module_device, placed
from .progress import Progress, fmt_loss
from .rtn import collect_imatrix, rtn_layers
from .signround import BlockResult, autocast_for, signround_block


@dataclass
class Job:
    """What to quantize: the model, its blocks, the quantized layers' schemes (full names), head and data; where
    (the main device, and a device map that may spread a block's linears over several devices)."""

    model: nn.Module
    block_names: list[str]
    schemes: dict[str, QuantScheme]
    lm_head: str | None
    samples: list[dict] | None
    cfg: TuneConfig
    device: torch.device
    device_map: DeviceMap | None = None


def block_groups(block_names: list[str], nblocks: int) -> list[list[str]]:
    """The blocks tuned together: runs of `nblocks` consecutive blocks (the last run may be shorter)."""
    return [block_names[i:i + nblocks] for i in range(0, len(block_names), nblocks)]


def _unit(model: nn.Module, names: list[str], grouped: bool) -> tuple[nn.Module, dict[str, str]]:
    """The module tuned as one (a block, or a BlockGroup of `names`) and its layer names -> full model names."""
    if not grouped:
        block = get_module(model, names[0])
        return block, {n: f"{names[0]}.{n}" if n else names[0] for n in find_linears(block)}
    group = BlockGroup([get_module(model, n) for n in names])
    full = {}
    for local in find_linears(group):
        j, _, rest = local.partition(".")
        full[local] = f"{names[int(j)]}.{rest}"
    return group, full


def _prefixed(records: dict[str, QuantizedTensor], prefix: str) -> dict[str, QuantizedTensor]:
    return {f"{prefix}.{n}" if n else prefix: r for n, r in records.items()}


def _apply(model: nn.Module, records: dict[str, QuantizedTensor]) -> None:
    """Write the dequantized weights of `records` (from a checkpoint) into the model."""
    for name, qt in records.items():
        write_weight(get_module(model, name), qt.dequantize())


def quantize_blocks(job: Job, work: WorkDir | None, progress: Progress) -> dict[str, QuantizedTensor]:
    """Quantize every block of `job.model` in order (`cfg.nblocks` consecutive blocks at a time, tuned jointly on
    the output of the last), then the layers outside the blocks; returns all records.

    Checkpoints (`work`) and progress lines count these groups of blocks."""
    cfg, model = job.cfg, job.model
    dmap = job.device_map or DeviceMap(job.device)
    groups = block_groups(job.block_names, cfg.nblocks)
    grouped = cfg.nblocks > 1
    records: dict[str, QuantizedTensor] = {}
    start = work.done if work else 0
    for i in range(start):
        block_records = work.load_block(i)
        _apply(model, block_records)
        records.update(block_records)
    if start:
        progress.note(f"resuming at block {start + 1}/{len(groups)} from {work.path}" if start < len(groups) else
                      f"all {len(groups)} blocks are done in {work.path}; resuming with the layers outside them")
    inputs, q, fp, shard = None, None, None, None
    if cfg.calibrated or any_needs_act_max(job.schemes):
        inputs = capture_block_inputs(model, job.block_names, local_rows(job.samples))
        shard = make_shard(inputs.mask, len(job.samples))
        cache_dev = "cpu" if cfg.low_gpu_mem_usage else dmap.main
        inputs = inputs.to(cache_dev)
        inputs = inputs.grouped(cfg.nblocks) if grouped else inputs
        q = fp = inputs.hidden
        if start:
            chain = work.load_chain()
            q, fp = local_rows(chain["q"]).to(cache_dev), local_rows(chain["fp"]).to(cache_dev)
    for i in range(start, len(groups)):
        tick = time.perf_counter()
        unit, full = _unit(model, groups[i], grouped)
        local = {n: job.schemes[f] for n, f in full.items() if f in job.schemes}
        with placed(unit, dmap, full):
            result, q, fp = _quantize_block(unit, i, local, inputs, q, fp, cfg, shard)
        block_records = {full[n]: r for n, r in result.records.items()}
        records.update(block_records)
        if work:
            save_block(work, i, block_records, {"q": q, "fp": fp} if q is not None else {})
        progress.block(i, time.perf_counter() - tick, result.loss_before, result.loss_after)
    records.update(_quantize_outside(job, inputs, q, progress, shard))
    return records


def _quantize_block(block: nn.Module, index: int, schemes: dict[str, QuantScheme], inputs: BlockInputs | None,
                    q: torch.Tensor | None, fp: torch.Tensor | None, cfg: TuneConfig, shard: Shard | None = None):
    """Quantize one block; returns (result, next q input, next fp input). `shard`: this rank's samples when
    distributed (statistics and losses are then combined over the ranks)."""
    layers = find_linears(block)
    if inputs is None:  # zero-shot RTN
        return BlockResult(rtn_layers(layers, schemes)), None, None
    bs = cfg.batch_size
    if cfg.awq:
        dev = module_device(block)
        awq_block(block, fp, lambda idx: kwargs_to(inputs.kwargs(index, idx), dev), schemes, n_grid=cfg.awq_n_grid,
                  duo_scaling=cfg.awq_duo_scaling, clip=cfg.awq_clip, batch_size=bs, mask=inputs.mask)
    if cfg.algorithm != "signround":  # opt-RTN, or plain RTN (after AWQ, or for static activation scales)
        # the reference's RTN quantizer has no quantized-input chain: its imatrix and act_max come from the
        # full-precision chain (on SmolLM2-135M W4G128 opt-RTN, 32x256 tokens: held-out KL 0.2995 against 0.3017 with
        # the statistics of the quantized chain); the reported loss is the quantized block's on that chain
        stats = collect_imatrix({n: layers[n] for n in schemes}) if cfg.algorithm == "opt-rtn" else nullcontext()
        amp = _amp(block, cfg) if cfg.algorithm == "opt-rtn" else nullcontext
        with stats as imatrix, collect_act_max(static_layers(layers, schemes)) as act_max, amp():
            fp_out = forward_all(block, inputs, index, fp, bs).to(fp.dtype)
        imatrix, act_max = reduce_stats(imatrix, "sum"), reduce_stats(act_max, "max")
        result = BlockResult(rtn_layers(layers, schemes, imatrix))
        attach_act_max(result.records, act_max)
        with amp():
            q_out = forward_all(block, inputs, index, fp, bs).to(fp.dtype)
        result.loss_after = global_mse(q_out, fp_out, inputs.mask)
        return result, fp_out, fp_out
    stats = collect_imatrix({n: layers[n] for n in schemes}) if cfg.start_from_opt_rtn else nullcontext()
    with stats as imatrix, collect_act_max(static_layers(layers, schemes)) as act_max:
        fp_out = forward_all(block, inputs, index, fp, bs)
    imatrix, act_max = reduce_stats(imatrix, "sum"), reduce_stats(act_max, "max")
    source = q if cfg.enable_quanted_input else fp
    result = signround_block(block, layers, schemes, source, lambda idx: fp_out[idx],
                             lambda idx: inputs.kwargs(index, idx), inputs.mask, cfg, seed=cfg.seed + index,
                             imatrix=imatrix, keep_outputs=cfg.enable_quanted_input,
                             shard=shard)
    attach_act_max(result.records, act_max)
    if not cfg.enable_quanted_input:
        return result, fp_out, fp_out
    q_next = result.outputs if result.outputs is not None else forward_all(block, inputs, index, q, bs)
    result.outputs = None
    return result, q_next, fp_out


def _amp(block: nn.Module, cfg: TuneConfig):
    """The autocast context of opt-RTN's two block passes (statistics, then the quantized chain): bf16 matmuls when
    `amp` and the device multiplies bf16 fast (`signround.fast_bf16`), else none; the chain itself stays in the
    model's dtype (the residual adds promote back)."""
    return autocast_for(module_device(block), next(block.parameters()).dtype, cfg.amp)


def _quantize_outside(job: Job, inputs: BlockInputs | None, q: torch.Tensor | None,
                      progress: Progress, shard: Shard | None = None) -> dict[str, QuantizedTensor]:
    """Quantize the layers outside the blocks (the LM head with data; anything else with RTN)."""
    outside = {n: s for n, s in job.schemes.items() if not any(n.startswith(b + ".") for b in job.block_names)}
    records: dict[str, QuantizedTensor] = {}
    if not outside:
        return records
    tick = time.perf_counter()
    model, cfg = job.model, job.cfg
    untie_head(model, job.lm_head, outside)
    head_scheme = outside.pop(job.lm_head, None)
    if outside:
        records.update(rtn_layers({n: get_module(model, n) for n in outside}, outside))
    if head_scheme is None:
        return records
    head = get_module(model, job.lm_head)
    home = head.weight.device
    head.to(job.device)
    if inputs is None or (cfg.algorithm == "rtn" and not needs_act_max(head_scheme)):
        result = BlockResult(rtn_layers({"": head}, {"": head_scheme}))
    else:
        x = capture_head_inputs(model, job.block_names, job.lm_head, q, local_rows(job.samples))
        x = x.to(inputs.hidden.device)
        if cfg.algorithm == "rtn":
            result = BlockResult(rtn_layers({"": head}, {"": head_scheme}))
        else:
            result = _quantize_head(head, head_scheme, x, inputs.mask, cfg, shard)
        attach_act_max(result.records, reduce_stats({"": x.abs().max().float().cpu()}, "max"))
    head.to(home)
    records.update(_prefixed(result.records, job.lm_head))
    progress.note(f"{job.lm_head}  loss {fmt_loss(result.loss_before)} -> {fmt_loss(result.loss_after)}  "
                  f"{time.perf_counter() - tick:.1f}s")
    return records


def _quantize_head(head: nn.Module, scheme: QuantScheme, x: torch.Tensor, mask: torch.Tensor,
                   cfg: TuneConfig, shard: Shard | None = None) -> BlockResult:
    """Opt-RTN or SignRound of the LM head on its inputs `x` ([N, L, H]); batch 1 with accumulation (logits are big)."""
    if cfg.algorithm == "opt-rtn":
        with collect_imatrix({"": head}) as imatrix, torch.no_grad():
            for s in range(x.shape[0]):
                head(x[s:s + 1].to(head.weight.device))
        return BlockResult(rtn_layers({"": head}, {"": scheme}, reduce_stats(imatrix, "sum")))
    w0 = weight_of(head).detach().clone()

    def target(idx):
        with torch.no_grad():
            return F.linear(x[idx].to(w0.device), w0, head.bias)

    head_cfg = replace(cfg, batch_size=1, gradient_accumulate_steps=cfg.batch_size * cfg.gradient_accumulate_steps)
    return signround_block(head, {"": head}, {"": scheme}, x, target, lambda idx: {}, mask, head_cfg,
                           seed=cfg.seed + 100_003, shard=shard)


def untie_head(model: nn.Module, lm_head: str | None, schemes: dict[str, QuantScheme]) -> None:
    """Give a quantized LM head its own weight when it shares it with the input embeddings."""
    if lm_head is None or lm_head not in schemes:
        return
    head = get_module(model, lm_head)
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None and head.weight is emb.weight:
        head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
        if hasattr(model, "config"):
            model.config.tie_word_embeddings = False
