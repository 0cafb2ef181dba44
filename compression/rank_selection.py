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
from compression.factorize import factorized_cost, full_rank, get_submodule
from compression.inventory import Inventory, LayerInfo
from compression.layer_bench import LayerTiming
from compression.layers import tt_layout
from compression.sensitivity import SensitivityPoint, points_for, predicted_error

Option = tuple[str, int]  # (method, rank); a rank at or above the method's full rank means dense


@dataclass
class RankPlan:
    """One configuration: method and rank per factorized layer (full rank = left dense), predicted cost,
    and per layer a short reason for the choice."""

    ranks: dict[str, int]
    params: int
    macs: int
    latency_ms: float
    predicted_error: float
    measured_drop: float | None = None
    notes: list[str] = field(default_factory=list)
    methods: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "ranks": self.ranks,
            "methods": self.methods,
            "params": self.params,
            "macs": self.macs,
            "latency_ms_estimate": self.latency_ms,
            "predicted_map_error": self.predicted_error,
            "measured_drop": self.measured_drop,
            "reasons": self.reasons,
            "notes": self.notes,
        }


def energy_rank(layer: nn.Module, method: str, energy: float) -> int:
    """Smallest rank keeping `energy` of the squared singular values of the layer's matricization(s)
    (for TT: of the unfolding at every bond, so the rank is a bond dimension)."""
    weight = layer.weight.detach().float()
    if weight.ndim == 4 and method in ("tucker2", "cp"):
        unfoldings = [weight.flatten(1), weight.transpose(0, 1).flatten(1)]
    elif method == "tt":
        unfoldings = _tt_unfoldings(weight.reshape(weight.shape[0], -1))
    else:
        unfoldings = [weight.reshape(weight.shape[0], -1)]
    rank = 1
    for matrix in unfoldings:
        values = torch.linalg.svdvals(matrix.double()) ** 2
        share = torch.cumsum(values, 0) / values.sum().clamp_min(1e-30)
        rank = max(rank, int(torch.searchsorted(share, torch.tensor(energy, dtype=share.dtype))) + 1)
    return rank


def _tt_unfoldings(matrix: torch.Tensor, n_cores: int = 3) -> list[torch.Tensor]:
    out_modes, in_modes, _ = tt_layout(matrix.shape[0], matrix.shape[1], 1, n_cores)
    interleave = [axis for k in range(n_cores) for axis in (k, n_cores + k)]
    sizes = [o * i for o, i in zip(out_modes, in_modes, strict=True)]
    tensor = matrix.reshape(*out_modes, *in_modes).permute(*interleave).reshape(*sizes)
    return [tensor.reshape(math.prod(sizes[: k + 1]), -1) for k in range(n_cores - 1)]


def rank_ladder(
    info: LayerInfo,
    multiple: int,
    step: float,
    extra: tuple[int, ...] = (),
    min_fraction: float = 0.0,
    method: str | None = None,
) -> list[int]:
    """Descending ranks a layer may take by `method` (default: its own), each strictly cheaper than the
    one before; ladder[0] = dense (the method's full rank).

    Ranks below `min_fraction` of full rank are never offered: summed per-layer errors stop predicting
    the joint error long before that, and the greedy walk would otherwise empty the biggest layer."""
    method = method or info.method or ""
    top = full_rank(info.shape, method)
    floor = max(1, math.ceil(min_fraction * top))
    candidates = {top, floor, *(r for r in extra if r >= floor)}
    rank = float(top)
    while rank > 1:
        rank *= step
        rounded = int(rank) // multiple * multiple if rank >= multiple else max(1, int(rank))
        candidates.add(max(1, rounded))
    ladder = [top]
    last_cost = info.params
    for rank in sorted((c for c in candidates if floor <= c < top), reverse=True):
        cost = factorized_cost(info.shape, method, rank)[0]
        if cost < last_cost:
            ladder.append(rank)
            last_cost = cost
    return ladder


class _CostModel:
    """Predicted params / MACs / latency / error of a configuration of (method, rank) per layer.

    Saved time comes from the per-layer ORT measurements where a layer has them (auto layers), else
    from the layer's share of the deployed latency scaled by the MACs it sheds."""

    def __init__(
        self,
        inventory: Inventory,
        sensitivity: Mapping[str, list[SensitivityPoint]],
        baseline_latency_ms: float | None,
        timings: Mapping[str, LayerTiming] | None = None,
    ) -> None:
        self.inventory = inventory
        self.layers = inventory.by_name()
        self.sensitivity = sensitivity
        self.latency_ms = baseline_latency_ms or inventory.total_latency_ms
        # torch-hook shares, rescaled onto the deployed (ORT) latency
        self.shares = {info.name: info.latency_share for info in inventory.layers}
        self.timings = dict(timings or {})
        self._memo: dict[tuple[str, str, int], tuple[int, int, float, float]] = {}

    def measured_ms(self, name: str, method: str, rank: int) -> float | None:
        """The layer's own ORT time with this option (measured or fitted), None if never timed."""
        timing = self.timings.get(name)
        if timing is None:
            return None
        info = self.layers[name]
        if rank >= full_rank(info.shape, method):
            return timing.dense_ms
        macs = {r: factorized_cost(info.shape, method, r)[1] for r in (*timing.points.get(method, {}), rank)}
        return timing.estimate(method, rank, macs)

    def layer(self, name: str, method: str, rank: int) -> tuple[int, int, float, float]:
        """(params, MACs, ms saved, predicted map error) of one layer at one option (memoized: the
        greedy walk asks for the same options many times)."""
        key = (name, method, rank)
        if key not in self._memo:
            self._memo[key] = self._layer(name, method, rank)
        return self._memo[key]

    def _layer(self, name: str, method: str, rank: int) -> tuple[int, int, float, float]:
        info = self.layers[name]
        top = full_rank(info.shape, method)
        if rank >= top:
            return info.params, info.macs, 0.0, 0.0
        params, macs = factorized_cost(info.shape, method, rank)
        measured = self.measured_ms(name, method, rank)
        if measured is not None:
            saved_ms = self.timings[name].dense_ms - measured
        else:
            saved_ms = self.latency_ms * self.shares[name] * (1.0 - macs / max(info.macs, 1))
        error = predicted_error(points_for(self.sensitivity.get(name, []), method), top, rank)
        return params, macs, saved_ms, error

    def plan(self, config: Mapping[str, Option]) -> RankPlan:
        params, macs = self.inventory.total_params, self.inventory.total_macs
        latency, error = self.latency_ms, 0.0
        for name, (method, rank) in config.items():
            info = self.layers[name]
            p, m, saved, e = self.layer(name, method, rank)
            params += p - info.params
            macs += m - info.macs
            latency -= saved
            error += e
        return RankPlan(
            {name: rank for name, (_, rank) in config.items()},
            params,
            macs,
            latency,
            error,
            methods={name: method for name, (method, _) in config.items()},
        )


def _objective_cost(cost: _CostModel, name: str, option: Option, objective: str) -> float:
    """What an option costs in the budget's currency: parameters, or (estimated) ms not saved."""
    params, _, saved_ms, _ = cost.layer(name, *option)
    return float(params) if objective == "params" else -saved_ms


def _dominated(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """b is at least as good as a in every criterion and better in one (lower is better)."""
    return all(y <= x for x, y in zip(a, b, strict=True)) and any(y < x for x, y in zip(a, b, strict=True))


def auto_ladder(
    cost: _CostModel,
    info: LayerInfo,
    ladders: Mapping[str, list[int]],
    objective: str,
) -> tuple[list[Option], dict[str, str]]:
    """One ladder over all candidate methods of an auto layer: dense first, then options that are
    strictly cheaper in the budget's currency and strictly less accurate, so the greedy walk can trade
    method and rank together. Options slower than the dense layer (measured) or beaten by another
    option on parameters, time and predicted error at once are dropped; returns (ladder, why dropped)."""
    dense: Option = (info.method or "", info.full_rank)
    dropped: dict[str, str] = {}
    scored: list[tuple[Option, tuple[float, float, float]]] = []
    for method, ranks in ladders.items():
        slow = 0
        for rank in ranks[1:]:
            params, _, _, error = cost.layer(info.name, method, rank)
            ms = cost.measured_ms(info.name, method, rank)
            dense_ms = cost.timings[info.name].dense_ms if info.name in cost.timings else None
            if ms is not None and dense_ms is not None and ms >= dense_ms:
                slow += 1
                continue
            scored.append(((method, rank), (float(params), ms if ms is not None else 0.0, error)))
        if slow and slow == len(ranks) - 1:
            dropped[method] = "slower than the dense layer at every rank"
    frontier = [o for o, v in scored if not any(_dominated(v, w) for _, w in scored)]
    ordered = sorted(
        frontier, key=lambda o: (_objective_cost(cost, info.name, o, objective), cost.layer(info.name, *o)[3])
    )
    dense_cost = _objective_cost(cost, info.name, dense, objective)
    chain: list[Option] = []
    best_error = math.inf
    for option in ordered:
        error = cost.layer(info.name, *option)[3]
        if _objective_cost(cost, info.name, option, objective) < dense_cost and error < best_error:
            chain.append(option)
            best_error = error
    for method in ladders:
        if method not in dropped and not any(m == method for m, _ in chain):
            dropped[method] = "another method was cheaper and more accurate at every rank"
    return [dense, *reversed(chain)], dropped


def _greedy_path(
    cost: _CostModel,
    ladders: Mapping[str, list[Option]],
    start: Mapping[str, int],
    shrink: bool,
    objective: str,
) -> list[dict[str, Option]]:
    """Configurations reached by repeatedly taking the move with least error per unit of cost."""
    position = dict(start)
    path = []
    while True:
        best, best_score = None, None
        for name, index in position.items():
            target = index + 1 if shrink else index - 1
            if not 0 <= target < len(ladders[name]):
                continue
            now, new = cost.layer(name, *ladders[name][index]), cost.layer(name, *ladders[name][target])
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


def _ladders(
    model: nn.Module,
    cost: _CostModel,
    layers: Mapping[str, LayerInfo],
    names: list[str],
    objective: str,
    energy: float,
    rank_multiple: int,
    step: float,
    min_rank_fraction: float,
) -> tuple[dict[str, list[Option]], dict[str, int], dict[str, dict[str, str]]]:
    """Per layer: its ladder of options, the start index (energy rank) and, for auto layers, the
    methods that never made the ladder and why."""
    ladders: dict[str, list[Option]] = {}
    start: dict[str, int] = {}
    dropped: dict[str, dict[str, str]] = {}
    for name in names:
        info = layers[name]
        per_method: dict[str, list[int]] = {}
        start_error = math.inf
        start_rank: dict[str, int] = {}
        for method in info.candidates or (info.method or "",):
            wanted = min(
                full_rank(info.shape, method), energy_rank(get_submodule(model, name), method, energy)
            )
            ranks = rank_ladder(info, rank_multiple, step, (wanted,), min_rank_fraction, method)
            per_method[method] = ranks
            # energy ranks off the ladder (costlier than dense, or below the floor) snap to the nearest rung
            start_rank[method] = max((r for r in ranks if r <= wanted), default=ranks[-1])
            start_error = min(start_error, cost.layer(name, method, start_rank[method])[3])
        if not info.auto:
            method = next(iter(per_method))
            ladders[name] = [(method, r) for r in per_method[method]]
            start[name] = per_method[method].index(start_rank[method])
            continue
        ladders[name], dropped[name] = auto_ladder(cost, info, per_method, objective)
        # start at the cheapest option as accurate as the best method's energy rank
        fits = [i for i, o in enumerate(ladders[name]) if cost.layer(name, *o)[3] <= start_error + 1e-12]
        start[name] = max(fits) if fits else 0
    return ladders, start, dropped


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
    measure_drop: Callable[[dict[str, int], dict[str, str]], float] | None = None,
    timings: Mapping[str, LayerTiming] | None = None,
) -> RankPlan:
    """Methods and ranks meeting `budget`; raises BudgetError when it cannot be met (naming the nearest
    reachable). `measure_drop(ranks, methods)` measures the real metric drop of a configuration;
    `timings` are per-layer ORT measurements (auto layers compare methods by them)."""
    layers = {info.name: info for info in inventory.compressible}
    fixed = validate_fixed_ranks(fixed_ranks or {}, {n: i.full_rank for n, i in layers.items()})
    auto_fixed = [name for name in fixed if layers[name].auto]
    if auto_fixed:
        raise BudgetError(
            f"layer {auto_fixed[0]!r} picks its method automatically, so a rank alone is ambiguous; "
            f"fix both with --method {auto_fixed[0]}=<{'|'.join(layers[auto_fixed[0]].candidates)}>:<rank>"
        )
    if not layers:
        raise BudgetError("the model has no compressible layers")
    cost = _CostModel(inventory, sensitivity, baseline_latency_ms, timings)
    objective = "latency" if budget.latency_ms is not None and budget.params is None else "params"
    free = [name for name in layers if name not in fixed]
    ladders, start, dropped = _ladders(
        model, cost, layers, free, objective, energy, rank_multiple, step, min_rank_fraction
    )
    grow = _greedy_path(cost, ladders, start, shrink=False, objective=objective)
    shrink = _greedy_path(cost, ladders, start, shrink=True, objective=objective)
    pinned = {name: (layers[name].method or "", rank) for name, rank in fixed.items()}
    start_config = {name: ladders[name][index] for name, index in start.items()}
    path = [{**pinned, **config} for config in [*reversed(grow), start_config, *shrink]]
    plans = [cost.plan(config) for config in path]
    chosen = _choose(plans, budget, inventory, fixed, measure_drop)
    chosen.reasons = explain(chosen, cost, ladders, dropped, fixed, objective)
    return chosen


def _choose(
    plans: list[RankPlan],
    budget: Budget,
    inventory: Inventory,
    fixed: Mapping[str, int],
    measure_drop: Callable[[dict[str, int], dict[str, str]], float] | None,
) -> RankPlan:
    """The first plan on the path meeting the targets, or (drop alone) the most compressed within it."""

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
            chosen.measured_drop = measure_drop(chosen.ranks, chosen.methods)
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
    best.measured_drop = measure_drop(best.ranks, best.methods)
    if best.measured_drop > budget.drop:
        raise BudgetError(f"drop={budget.drop:g} cannot be met even by the least-compressed configuration")
    while low < high:
        middle = (low + high + 1) // 2
        drop = measure_drop(plans[middle].ranks, plans[middle].methods)
        if drop <= budget.drop:
            low, best = middle, plans[middle]
            best.measured_drop = drop
        else:
            high = middle - 1
    return best


def option_label(method: str, rank: int) -> str:
    return f"{method} {'bond' if method == 'tt' else 'rank'} {rank}"


def _describe(cost: _CostModel, name: str, option: Option) -> str:
    _, _, _, error = cost.layer(name, *option)
    ms = cost.measured_ms(name, *option)
    timing = cost.timings.get(name)
    measured = timing is not None and option[1] in timing.points.get(option[0], {})
    shown = "" if ms is None else f", {ms:.3f} ms" if measured else f", ~{ms:.3f} ms interpolated"
    return f"{option_label(*option)} (predicted map error {error:.3f}{shown})"


def explain(
    plan: RankPlan,
    cost: _CostModel,
    ladders: Mapping[str, list[Option]],
    dropped: Mapping[str, Mapping[str, str]],
    fixed: Mapping[str, int],
    objective: str,
) -> dict[str, str]:
    """One short sentence per compressible layer: why this method and rank (or dense)."""
    unit = "parameters" if objective == "params" else "ms saved"
    reasons: dict[str, str] = {}
    for name, rank in plan.ranks.items():
        info, method = cost.layers[name], plan.methods[name]
        dense = rank >= full_rank(info.shape, method)
        if name in fixed:
            reasons[name] = f"rank fixed at {rank} ({info.rule or '--rank'})" + (" = dense" if dense else "")
            continue
        if not info.auto:
            source = f"{method} from {info.rule}" if info.rule else method
            reasons[name] = (
                f"{source}; left dense: the budget was met without it"
                if dense
                else f"{source}; rank {rank}/{info.full_rank} by least predicted error per {unit}"
            )
            continue
        dropped_text = "; ".join(f"{m}: {why}" for m, why in dropped.get(name, {}).items())
        timing = cost.timings.get(name)
        dense_ms = f" (dense {timing.dense_ms:.3f} ms)" if timing else ""
        if dense:
            reasons[name] = "auto: left dense, the budget was met without it" + (
                f"; {dropped_text}" if dropped_text else ""
            )
            continue
        chosen = (method, rank)
        budget_cost = _objective_cost(cost, name, chosen, objective)
        rivals = []
        for other in {m for m, _ in ladders[name][1:]} - {method}:
            options = [o for o in ladders[name][1:] if o[0] == other]
            cheaper = [o for o in options if _objective_cost(cost, name, o, objective) <= budget_cost]
            if cheaper:
                rivals.append(_describe(cost, name, cheaper[0]))
        text = f"auto: {_describe(cost, name, chosen)}{dense_ms}: least predicted error per {unit}"
        if rivals:
            text += "; rivals at no higher cost: " + ", ".join(rivals)
        if dropped_text:
            text += f"; {dropped_text}"
        reasons[name] = text
    return reasons
