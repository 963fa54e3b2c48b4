"""AutoScheme: exact budgeted solver, decision units, and the search on tiny random models."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from ar_core.bits import layer_bits
from ar_core.errors import ArError

from ar_algos.autoscheme import AutoScheme, decision_units, parse_options, solve
from ar_algos.tiny import random_samples, tiny_model

OPTIONS = "W2A16G32,W4A16G32,W8A16G32"


def _brute(costs, losses, budget):
    best = None
    for pick in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(c[j] for c, j in zip(costs, pick))
        loss = sum(l[j] for l, j in zip(losses, pick))
        if cost <= budget and (best is None or loss < best - 1e-12):
            best = loss
    return best


def test_solver_matches_brute_force_and_never_exceeds_the_budget():
    rng = random.Random(0)
    for _ in range(60):
        n, k = rng.randint(1, 6), rng.randint(1, 4)
        costs = [[rng.randint(1, 40) for _ in range(k)] for _ in range(n)]
        losses = [[rng.random() for _ in range(k)] for _ in range(n)]
        budget = rng.randint(sum(map(min, costs)), sum(map(max, costs)))
        pick = solve(costs, losses, budget)
        assert sum(c[j] for c, j in zip(costs, pick)) <= budget
        assert math.isclose(sum(l[j] for l, j in zip(losses, pick)), _brute(costs, losses, budget), abs_tol=1e-9)


def test_solver_refuses_an_impossible_budget():
    with pytest.raises(ArError, match="below the cheapest"):
        solve([[5, 9], [4]], [[1.0, 0.0], [0.0]], 8)


def test_units_tie_shared_layers_per_block_and_group_experts():
    names = [f"model.layers.{b}.{p}" for b in range(2) for p in
             ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.experts.0.up_proj", "mlp.experts.1.up_proj", "mlp.experts.1.down_proj")]
    units = decision_units(names, [["q_proj", "k_proj", "v_proj"]])
    as_sets = sorted(sorted(u) for u in units)
    b0 = "model.layers.0."
    assert sorted([b0 + "self_attn.q_proj", b0 + "self_attn.k_proj", b0 + "self_attn.v_proj"]) in as_sets
    assert sorted([b0 + "mlp.experts.0.up_proj", b0 + "mlp.experts.1.up_proj", b0 + "mlp.experts.1.down_proj"]) \
        in as_sets
    assert len(units) == 6  # per block: qkv, o_proj, experts
    with pytest.raises(ArError, match="shared_layers"):
        decision_units(names, ["q_proj"])


def test_options_are_deduplicated_and_mixed_presets_refused():
    opts = parse_options("W4A16G32, W4G32, W2A16G32")
    assert [o.value for o in opts] == ["W4A16G32", "W2A16G32"]
    with pytest.raises(ArError, match="MIXED"):
        parse_options(["W4A16_MIXED"])
    with pytest.raises(ArError, match="avg_bits"):
        AutoScheme(0, OPTIONS)


def _search(model, avg_bits, **kw):
    scheme = AutoScheme(avg_bits, kw.pop("options", OPTIONS), verbose=False,
                        **{k: kw.pop(k) for k in ("shared_layers", "ignore_scale_zp_bits") if k in kw})
    config = scheme.search(model, samples=random_samples(4, 32), **kw)
    return config, scheme.report


@pytest.mark.parametrize("avg_bits", [2.6, 3.0, 5.0])
def test_search_respects_the_budget_and_feeds_resolve_plan(avg_bits):
    model = tiny_model("llama")
    config, report = _search(model, avg_bits, shared_layers=[["q_proj", "k_proj", "v_proj"]])
    assert report.used_bits <= report.budget_bits == math.floor(avg_bits * report.elements)
    assert report.avg_bits <= avg_bits and report.avg_weight_bits < report.avg_bits
    assert len(config) == 14 and set(config.values()) <= set(OPTIONS.split(","))
    for b in range(2):
        assert len({config[f"model.layers.{b}.self_attn.{p}_proj"] for p in "qkv"}) == 1
    for name, value in config.items():
        assert report.plan.entries[name].scheme.bits == int(value[1])
    if avg_bits == 5.0:  # a loose budget buys more 8-bit layers than a tight one
        assert sum(v == "W8A16G32" for v in config.values()) > 0


def test_fixed_and_ignored_layers_are_kept_and_count_against_the_budget():
    model = tiny_model("llama")
    down = "model.layers.0.mlp.down_proj"
    config, report = _search(model, 4.5, layer_config={down: "W8A16G32"}, ignore_layers="layers.1.self_attn.o_proj")
    assert config[down] == "W8A16G32" and "model.layers.1.self_attn.o_proj" not in config
    assert report.plan.entries["model.layers.1.self_attn.o_proj"].scheme.bits == 16
    fixed = layer_bits(report.plan.entries[down].scheme, (64, 128))
    o_proj = 64 * 64 * 16
    assert report.used_bits <= report.budget_bits
    assert report.used_bits >= fixed.code_bits + fixed.param_bits + o_proj
    with pytest.raises(ArError, match="avg_bits"):
        _search(tiny_model("llama"), 3.5, layer_config={down: "W8A16G32"}, ignore_layers="self_attn.o_proj")


def test_widths_the_plan_keeps_16bit_are_costed_as_16bit():
    model = tiny_model("llama", intermediate_size=80)  # gate/up/down widths 80: not a multiple of 32
    with pytest.raises(ArError, match="at least 10.0000"):  # 16-bit MLPs alone put the floor at 10 bits/weight
        _search(model, 6.0)
    config, report = _search(model, 12.0)
    for b in range(2):
        for p in ("gate", "up", "down"):
            assert report.plan.entries[f"model.layers.{b}.mlp.{p}_proj"].scheme.bits == 16
    assert 2 * 3 * 64 * 80 * 16 < report.used_bits <= report.budget_bits


def test_ignore_scale_zp_bits_budgets_code_bits_only():
    config, report = _search(tiny_model("llama"), 3.0, ignore_scale_zp_bits=True)
    assert report.avg_weight_bits <= 3.0 < report.avg_bits
    assert report.used_bits == round(report.avg_weight_bits * report.elements)


def test_routed_experts_of_a_block_share_one_option():
    model = tiny_model("qwen3_moe")
    config, report = _search(model, 3.0)
    for b in range(2):
        experts = {v for n, v in config.items() if n.startswith(f"model.layers.{b}.mlp.experts.")}
        assert len(experts) == 1
    assert not any(n.endswith("mlp.gate") for n in config)
    assert report.used_bits <= report.budget_bits


def test_a_fused_group_with_a_16bit_member_stays_16bit_together():
    model = tiny_model("llama", num_key_value_heads=1)  # k/v out_features 16: not packable, kept 16-bit
    config, report = _search(model, 5.5)
    for b in range(2):
        for p in "qkv":
            name = f"model.layers.{b}.self_attn.{p}_proj"
            assert config[name] == "BF16" and report.plan.entries[name].scheme.bits == 16
        assert config[f"model.layers.{b}.self_attn.o_proj"] != "BF16"
    assert report.used_bits <= report.budget_bits
