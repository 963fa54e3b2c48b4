"""`AutoScheme`: choose a scheme per layer under an average-bits budget (mixed-bit search).

    scheme = AutoScheme(avg_bits=3.0, options="W2A16G32,W4A16G32,W8A16G32")
    layer_config = scheme.search(model, tokenizer)        # layer name -> option, for resolve_plan / AutoRound

Layers that the default scheme would quantize are scored (see `scores.layer_scores`), grouped into decision units
(`units.decision_units`) and assigned by the exact knapsack solver (`solver.solve`). Layers the user fixed through
layer_config or ignore_layers keep their scheme and count against the budget: budget = floor(avg_bits * weights
in scope) - bits of the fixed layers, where the scope is the searched plus the fixed layers. Bits per layer follow
`ar_core.bits` (codes plus scale/zero bits, or codes only with ignore_scale_zp_bits); an option a layer's shape
cannot hold is costed as what the plan would really give it (e.g. 16-bit for widths not divisible by 32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ar_core.bits import layer_bits
from ar_core.errors import ArError, field_error
from ar_core.layer_config import LayerInfo, Plan, resolve_plan
from ar_core.plan.patterns import key_regex, parse_ignore, substring_regex
from ar_core.plan.shapes import KEEP_16BIT, shape_fallback
from ar_core.scheme import QuantScheme

from ..blocks import find_blocks, find_lm_head, find_linears, has_tied_head
from ..moe import unfuse_experts
from ..plan import layer_infos
from .options import parse_options
from .scores import layer_scores
from .solver import solve
from .units import decision_units

KEEP_HIGH = "BF16"  # what a layer gets when its shape cannot hold the chosen option (the plan would keep it 16-bit)


@dataclass
class SearchReport:
    """Outcome of a search: the layer_config, the final plan, the budget and what was used (bits over the scope),
    the average bits with and without scale/zero bits, and the raw scores (layer -> one score per option)."""

    layer_config: dict[str, Any]
    plan: Plan
    budget_bits: int
    used_bits: int
    elements: int
    avg_bits: float
    avg_weight_bits: float
    scores: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for logs."""
        return (f"AutoScheme: {self.avg_bits:.4f} bits/weight with scale/zero bits, {self.avg_weight_bits:.4f} "
                f"without, over {self.elements} weights (budget {self.budget_bits} bits, used {self.used_bits})")


def _number(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise field_error(ArError, name, value, f"an int >= {low}")
    return value


class AutoScheme:
    """Mixed-bit search settings (reference §7). `avg_bits`: target bits per weight over the searched layers;
    `options`: candidate schemes; `shared_layers`: groups that must share an option; nsamples/seqlen/batch_size:
    calibration for the sensitivity pass (defaults 16 / 256 / 2); `device_map`: where scoring runs (the model is
    moved there and back; None: where it is); `low_gpu_mem_usage`: recompute activations (gradient checkpointing)."""

    def __init__(self, avg_bits: float, options: Any, shared_layers: list | None = None,
                 ignore_scale_zp_bits: bool = False, batch_size: int | None = None, nsamples: int | None = None,
                 seqlen: int | None = None, dataset: Any = None, device_map: Any = None,
                 low_gpu_mem_usage: bool = True, seed: int = 42, verbose: bool = True):
        if isinstance(avg_bits, bool) or not isinstance(avg_bits, (int, float)) or not 0 < avg_bits <= 32:
            raise field_error(ArError, "avg_bits", avg_bits, "a number of bits per weight in (0, 32]")
        self.avg_bits = float(avg_bits)
        self.options = parse_options(options)
        self.shared_layers = shared_layers
        decision_units([], shared_layers)  # validates the groups' shape now
        self.ignore_scale_zp_bits = bool(ignore_scale_zp_bits)
        self.batch_size = _number("batch_size", 2 if batch_size is None else batch_size, 1)
        self.nsamples = _number("nsamples", 16 if nsamples is None else nsamples, 1)
        self.seqlen = _number("seqlen", 256 if seqlen is None else seqlen, 2)
        self.dataset, self.device_map, self.seed, self.verbose = dataset, device_map, seed, verbose
        self.low_gpu_mem_usage = bool(low_gpu_mem_usage)
        self.report: SearchReport | None = None

    def _bits(self, s: QuantScheme, shape: tuple[int, int]) -> int:
        lb = layer_bits(s, shape)
        return lb.code_bits if self.ignore_scale_zp_bits else lb.code_bits + lb.param_bits

    def _samples(self, model: nn.Module, tokenizer: Any, samples: list[dict] | None, dataset: Any) -> list[dict]:
        if samples is not None:
            return samples
        from ..data import get_calibration_data

        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        seqlen = min(self.seqlen, limit) if isinstance(limit, int) else self.seqlen
        dataset = self.dataset if self.dataset is not None else dataset
        return get_calibration_data(tokenizer, dataset, nsamples=self.nsamples, seqlen=seqlen, seed=self.seed)

    def search(self, model: nn.Module, tokenizer: Any = None, layer_config: dict | None = None,
               ignore_layers: Any = None, quant_lm_head: bool = False, samples: list[dict] | None = None,
               dataset: Any = None) -> dict:
        """Score, solve and return the layer_config (user entries kept, every searched layer by exact name).

        Fused MoE experts are unfused in place first (as AutoRound does), so each expert is a layer; the routed
        experts of one block share one option. `samples` (token-id dicts) replaces the calibration data; `dataset`
        is used when this AutoScheme was made without one. Bad settings and budgets no choice can meet raise ArError
        before any scoring.
        """
        unfuse_experts(model)
        blocks = find_blocks(model)
        infos = layer_infos(model, blocks)
        lm_head = find_lm_head(model, blocks)
        kw = dict(ignore_layers=ignore_layers, quant_lm_head=quant_lm_head, tied_embeddings=has_tied_head(model),
                  lm_head_name=lm_head)
        default = self.options[0].scheme
        base = resolve_plan(infos, default, **{**kw, "ignore_layers": None})
        fixed_names = _touched([x.name for x in infos], layer_config, ignore_layers)
        searched = [x for x in infos if x.name not in fixed_names and _quantized_by_default(base, x.name)]
        if not searched:
            raise ArError("AutoScheme found no layer to search: every quantizable layer is fixed by layer_config "
                          "or ignore_layers")
        fixed_plan = resolve_plan(infos, default, layer_config=layer_config, **kw)
        fixed = {x.name: self._bits(fixed_plan.entries[x.name].scheme, _shape(x)) for x in infos
                 if x.name in fixed_names}
        effective, tied_groups = _effective_schemes(searched, [o.scheme for o in self.options])
        units = decision_units([x.name for x in searched], list(self.shared_layers or []) + tied_groups)
        shapes = {x.name: _shape(x) for x in searched}
        costs = [[sum(self._bits(effective[n][j], shapes[n]) for n in unit) for j in range(len(self.options))]
                 for unit in units]
        elements = sum(x.in_features * x.out_features for x in infos if x.name in fixed or x.name in shapes)
        budget = math.floor(self.avg_bits * elements) - sum(fixed.values())
        cheapest = sum(min(c) for c in costs)
        if cheapest > budget:
            floor = (cheapest + sum(fixed.values())) / elements
            raise field_error(ArError, "avg_bits", self.avg_bits,
                              f"at least {floor:.4f} (the cheapest choice of these options and fixed layers)")
        modules = find_linears(model)
        scores = self._score(model, {n: modules[n] for n in shapes},
                             {n: [s if s.is_quantized else None for s in ss] for n, ss in effective.items()},
                             self._samples(model, tokenizer, samples, dataset))
        losses = [[sum(scores[n][j] for n in unit) for j in range(len(self.options))] for unit in units]
        picks = solve(costs, losses, budget)
        result = dict(layer_config or {})
        for unit, j in zip(units, picks):
            result.update({n: self.options[j].value if effective[n][j].is_quantized else KEEP_HIGH
                           for n in unit})
        final = resolve_plan(infos, default, layer_config=result, **kw)
        scope = [x for x in infos if x.name in fixed or x.name in shapes]
        self.report = _report(result, final, scope, budget + sum(fixed.values()), scores, self._bits)
        if self.verbose:
            print(self.report.summary())
        return result

    def _score(self, model, layers, options, samples) -> dict[str, list[float]]:
        if self.device_map is None:
            return layer_scores(model, layers, options, samples, self.batch_size, self.low_gpu_mem_usage)
        home = next(model.parameters()).device
        model.to(torch.device(self.device_map if not isinstance(self.device_map, int) else f"cuda:{self.device_map}"))
        try:
            return layer_scores(model, layers, options, samples, self.batch_size, self.low_gpu_mem_usage)
        finally:
            model.to(home)


def _shape(x: LayerInfo) -> tuple[int, int]:
    return (x.out_features, x.in_features)


def _effective(x: LayerInfo, s: QuantScheme) -> QuantScheme:
    """The scheme the plan gives layer `x` when `s` is asked for (shape rules applied)."""
    fb = shape_fallback(x, s, s.gguf is not None)
    return s if fb is None else fb[0]


def _effective_schemes(layers: list[LayerInfo], options: list[QuantScheme]):
    """Per layer, the scheme each option really gives it; and the fused groups (q/k/v, gate/up) that must be
    decided together because an option leaves one member 16-bit, which then holds for every member (they are
    served as one matrix)."""
    eff = {x.name: [_effective(x, s) for s in options] for x in layers}
    groups: dict[str, list[str]] = {}
    for x in layers:
        if x.fused_group is not None:
            groups.setdefault(x.fused_group, []).append(x.name)
    tied = []
    for members in groups.values():
        high = [j for j in range(len(options)) if any(not eff[m][j].is_quantized for m in members)]
        if not high or len(members) < 2:
            continue
        tied.append(members)
        for m in members:
            eff[m] = [KEEP_16BIT if j in high else s for j, s in enumerate(eff[m])]
    return eff, tied


def _quantized_by_default(plan: Plan, name: str) -> bool:
    e = plan.entries[name]
    return e.source == "fallback" or (e.source == "default" and e.scheme.is_quantized)


def _touched(names: list[str], layer_config: dict | None, ignore_layers: Any) -> set[str]:
    """Layers the user fixed: hit by a layer_config key (exact name or pattern) or an ignore_layers entry."""
    known = set(names)
    hit = set()
    for key in layer_config or {}:
        hit |= {key} if key in known else {n for n in names if key_regex(key).search(n)}
    for entry in parse_ignore(ignore_layers):
        hit |= {n for n in names if substring_regex(entry).search(n)}
    return hit


def _report(result: dict, plan: Plan, scope: list[LayerInfo], budget: int, scores, bits) -> SearchReport:
    """Bits actually used by the final plan over the scope, in the search's own accounting (`bits`)."""
    parts = [layer_bits(plan.entries[x.name].scheme, _shape(x)) for x in scope]
    elements = sum(p.elements for p in parts)
    used = sum(bits(plan.entries[x.name].scheme, _shape(x)) for x in scope)
    with_params = sum(p.code_bits + p.param_bits for p in parts) / elements
    codes = sum(p.code_bits for p in parts) / elements
    return SearchReport(result, plan, budget, used, elements, with_params, codes, scores)
