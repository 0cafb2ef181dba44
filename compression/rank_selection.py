"""Choose per-layer ranks to a budget: energy ranks as the start, then greedy moves by sensitivity.

The greedy walk builds one path of configurations from all-dense to all-minimal, ordered by predicted
error per unit of cost saved. A params/latency target picks the first point on the path that meets it; a
`drop` limit is checked on the real metric (binary search along the path), because summed per-layer
predictions are only a guide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from compression.budget import Budget, validate_fixed_ranks
from compression.errors import BudgetError
from compression.factorize import factorized_cost, get_submodule
from compression.inventory import Inventory, LayerInfo
from compression.sensitivity import SensitivityPoint, predicted_error


@dataclass
class RankPlan:
    """One configuration: rank per factorized layer (full rank = left dense) and its predicted cost."""

    ranks: dict[str, int]
    params: int
    macs: int
    latency_ms: float
    predicted_error: float
    measured_drop: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "ranks": self.ranks,
            "params": self.params,
            "macs": self.macs,
            "latency_ms_estimate": self.latency_ms,
            "predicted_map_error": self.predicted_error,
            "measured_drop": self.measured_drop,
            "notes": self.notes,
        }


def energy_rank(layer: nn.Module, method: str, energy: float) -> int:
    """Smallest rank keeping `energy` of the squared singular values of the layer's matricization(s)."""
    weight = layer.weight.detach().float()
    if weight.ndim == 4 and method in ("tucker2", "cp"):
        unfoldings = [weight.flatten(1), weight.transpose(0, 1).flatten(1)]
    else:
        unfoldings = [weight.reshape(weight.shape[0], -1)]
    rank = 1
    for matrix in unfoldings:
        values = torch.linalg.svdvals(matrix.double()) ** 2
        share = torch.cumsum(values, 0) / values.sum().clamp_min(1e-30)
        rank = max(rank, int(torch.searchsorted(share, torch.tensor(energy, dtype=share.dtype))) + 1)
    return rank


def rank_ladder(
    info: LayerInfo, multiple: int, step: float, extra: tuple[int, ...] = (), min_fraction: float = 0.0
) -> list[int]:
    """Descending ranks a layer may take, each strictly cheaper than the one before; ladder[0] = dense.

    Ranks below `min_fraction` of full rank are never offered: summed per-layer errors stop predicting
    the joint error long before that, and the greedy walk would otherwise empty the biggest layer."""
    floor = max(1, math.ceil(min_fraction * info.full_rank))
    candidates = {info.full_rank, floor, *(r for r in extra if r >= floor)}
    rank = float(info.full_rank)
    while rank > 1:
        rank *= step
        rounded = int(rank) // multiple * multiple if rank >= multiple else max(1, int(rank))
        candidates.add(max(1, rounded))
    ladder = [info.full_rank]
    last_cost = info.params
    for rank in sorted((c for c in candidates if floor <= c < info.full_rank), reverse=True):
        cost = factorized_cost(info.shape, info.method, rank)[0]
        if cost < last_cost:
            ladder.append(rank)
            last_cost = cost
    return ladder


class _CostModel:
    """Predicted params / MACs / latency / error of a rank configuration."""

    def __init__(
        self,
        inventory: Inventory,
        sensitivity: Mapping[str, list[SensitivityPoint]],
        baseline_latency_ms: float | None,
    ) -> None:
        self.inventory = inventory
        self.layers = inventory.by_name()
        self.sensitivity = sensitivity
        self.latency_ms = baseline_latency_ms or inventory.total_latency_ms
        # torch-hook shares, rescaled onto the deployed (ORT) latency
        self.shares = {info.name: info.latency_share for info in inventory.layers}

    def layer(self, name: str, rank: int) -> tuple[int, int, float, float]:
        info = self.layers[name]
        if rank >= info.full_rank:
            return info.params, info.macs, 0.0, 0.0
        params, macs = factorized_cost(info.shape, info.method, rank)
        saved_ms = self.latency_ms * self.shares[name] * (1.0 - macs / max(info.macs, 1))
        error = predicted_error(self.sensitivity.get(name, []), info.full_rank, rank)
        return params, macs, saved_ms, error

    def plan(self, ranks: Mapping[str, int]) -> RankPlan:
        params, macs = self.inventory.total_params, self.inventory.total_macs
        latency, error = self.latency_ms, 0.0
        for name, rank in ranks.items():
            info = self.layers[name]
            p, m, saved, e = self.layer(name, rank)
            params += p - info.params
            macs += m - info.macs
            latency -= saved
            error += e
        return RankPlan(dict(ranks), params, macs, latency, error)


def _greedy_path(
    cost: _CostModel,
    ladders: Mapping[str, list[int]],
    start: Mapping[str, int],
    shrink: bool,
    objective: str,
) -> list[dict[str, int]]:
    """Configurations reached by repeatedly taking the move with least error per unit of cost."""
    position = {name: ladders[name].index(rank) for name, rank in start.items()}
    path = []
    while True:
        best, best_score = None, None
        for name, index in position.items():
            target = index + 1 if shrink else index - 1
            if not 0 <= target < len(ladders[name]):
                continue
            now, new = cost.layer(name, ladders[name][index]), cost.layer(name, ladders[name][target])
            gain = (now[0] - new[0]) if objective == "params" else (new[2] - now[2])
            gain = gain if shrink else -gain
            delta_error = (new[3] - now[3]) if shrink else (now[3] - new[3])
            if gain <= 0:
                continue
            score = delta_error / gain
            if best_score is None or (score < best_score if shrink else score > best_score):
                best, best_score = (name, target), score
        if best is None:
            return path
        position[best[0]] = best[1]
        path.append({name: ladders[name][index] for name, index in position.items()})


def select_ranks(
    model: nn.Module,
    inventory: Inventory,
    sensitivity: Mapping[str, list[SensitivityPoint]],
    budget: Budget,
    fixed_ranks: Mapping[str, int] | None = None,
    energy: float = 0.98,
    rank_multiple: int = 4,
    step: float = 0.75,
    min_rank_fraction: float = 0.0,
    baseline_latency_ms: float | None = None,
    measure_drop: Callable[[dict[str, int]], float] | None = None,
) -> RankPlan:
    """Ranks meeting `budget`; raises BudgetError when it cannot be met (naming the nearest reachable)."""
    layers = {info.name: info for info in inventory.compressible}
    fixed = validate_fixed_ranks(fixed_ranks or {}, {n: i.full_rank for n, i in layers.items()})
    if not layers:
        raise BudgetError("the model has no compressible layers")
    starts = {
        name: min(info.full_rank, energy_rank(get_submodule(model, name), info.method, energy))
        for name, info in layers.items()
        if name not in fixed
    }
    ladders = {
        name: rank_ladder(layers[name], rank_multiple, step, (starts[name],), min_rank_fraction)
        for name in starts
    }
    # energy ranks off the ladder (costlier than dense, or below the floor) snap to the nearest rung
    start = {
        name: max((r for r in ladders[name] if r <= starts[name]), default=ladders[name][-1])
        for name in starts
    }
    cost = _CostModel(inventory, sensitivity, baseline_latency_ms)
    objective = "latency" if budget.latency_ms is not None and budget.params is None else "params"
    grow = _greedy_path(cost, ladders, start, shrink=False, objective=objective)
    shrink = _greedy_path(cost, ladders, start, shrink=True, objective=objective)
    path = [{**fixed, **ranks} for ranks in [*reversed(grow), dict(start), *shrink]]
    plans = [cost.plan(ranks) for ranks in path]

    def meets_targets(plan: RankPlan) -> bool:
        ok = budget.params is None or plan.params <= budget.params * inventory.total_params
        return ok and (budget.latency_ms is None or plan.latency_ms <= budget.latency_ms)

    if budget.params is not None or budget.latency_ms is not None:
        chosen = next((p for p in plans if meets_targets(p)), None)
        if chosen is None:
            smallest = plans[-1]
            raise BudgetError(
                f"budget {budget.describe()} cannot be met: the smallest reachable model has "
                f"{smallest.params / inventory.total_params:.3f} of the parameters and an estimated "
                f"{smallest.latency_ms:.1f} ms" + (" (with the fixed ranks given)" if fixed else "")
            )
        if budget.drop is not None and measure_drop is not None:
            chosen.measured_drop = measure_drop(chosen.ranks)
            if chosen.measured_drop > budget.drop:
                raise BudgetError(
                    f"budget {budget.describe()}: meeting the size/latency target costs a metric drop of "
                    f"{chosen.measured_drop:.4f} > drop={budget.drop:g} before healing; relax one of them"
                )
        return chosen
    if budget.drop is None:
        raise BudgetError("empty budget")
    if measure_drop is None:
        raise BudgetError("a drop= budget needs an evaluator (held-out images)")
    # Largest compression whose measured drop stays within the limit (drop grows along the path).
    low, high = 0, len(plans) - 1
    best = plans[0]
    best.measured_drop = measure_drop(best.ranks)
    if best.measured_drop > budget.drop:
        raise BudgetError(f"drop={budget.drop:g} cannot be met even by the least-compressed configuration")
    while low < high:
        middle = (low + high + 1) // 2
        drop = measure_drop(plans[middle].ranks)
        if drop <= budget.drop:
            low, best = middle, plans[middle]
            best.measured_drop = drop
        else:
            high = middle - 1
    return best
