"""Exact multiple-choice knapsack: pick one option per unit, minimising total loss with total cost <= budget.

Dynamic programming over integer costs, keeping after each unit only the Pareto frontier (states whose loss is
strictly lower than every cheaper state's) and dropping states that cannot be completed within the budget. Both
prunings discard only dominated or infeasible partial solutions, so the optimum is exact; the frontier is held as
numpy arrays with back-pointers for recovering the choices.
"""

from __future__ import annotations

import numpy as np

from ar_core.errors import ArError


def solve(costs: list[list[int]], losses: list[list[float]], budget: int) -> list[int]:
    """Index of the chosen option for each unit (minimum summed loss, summed cost never above `budget`).

    costs[i][j] / losses[i][j]: cost (non-negative int) and loss of option j for unit i. Raises ArError when even
    the cheapest choice exceeds the budget.
    """
    if len(costs) != len(losses) or any(len(c) != len(l) or not c for c, l in zip(costs, losses)):
        raise ArError("solve(): costs and losses need one non-empty, equally long option list per unit")
    cheapest = [min(c) for c in costs]
    if sum(cheapest) > budget:
        raise ArError(f"budget of {budget} bits is below the cheapest choice ({sum(cheapest)} bits)")
    rest = np.cumsum([0] + cheapest[::-1])[::-1]  # rest[i]: cheapest cost of units i..end
    cost = np.zeros(1, dtype=np.int64)
    loss = np.zeros(1, dtype=np.float64)
    trail: list[tuple[np.ndarray, np.ndarray]] = []
    for i, (c, l) in enumerate(zip(costs, losses)):
        n = cost.size
        cand_cost = np.concatenate([cost + int(cj) for cj in c])
        cand_loss = np.concatenate([loss + float(lj) for lj in l])
        parent = np.tile(np.arange(n), len(c))
        choice = np.repeat(np.arange(len(c)), n)
        ok = cand_cost + rest[i + 1] <= budget
        cand_cost, cand_loss, parent, choice = cand_cost[ok], cand_loss[ok], parent[ok], choice[ok]
        order = np.lexsort((cand_loss, cand_cost))
        cand_cost, cand_loss, parent, choice = cand_cost[order], cand_loss[order], parent[order], choice[order]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(cand_loss)[:-1]])
        keep = cand_loss < best_before
        cost, loss = cand_cost[keep], cand_loss[keep]
        trail.append((parent[keep], choice[keep]))
    state = int(np.argmin(loss))
    picks = []
    for parent, choice in reversed(trail):
        picks.append(int(choice[state]))
        state = int(parent[state])
    return picks[::-1]
