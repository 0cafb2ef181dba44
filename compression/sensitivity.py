"""Per-layer sensitivity: how much the model's output degrades when only that layer is factorized."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from compression.evaluation import Evaluator
from compression.factorize import build_factorized, get_submodule, set_submodule, sync_memory_bank
from compression.inventory import Inventory


@dataclass(frozen=True)
class SensitivityPoint:
    """Anomaly-map error with only this layer factorized by `method` at `rank` ('' = the layer's method)."""

    rank: int
    fraction: float
    map_error: float
    method: str = ""


def probe_ranks(full_rank: int, fractions: tuple[float, ...], multiple: int) -> list[int]:
    ranks = set()
    for fraction in fractions:
        rank = max(1, round(full_rank * fraction))
        if rank >= multiple:
            rank = max(multiple, rank // multiple * multiple)
        if rank < full_rank:
            ranks.add(rank)
    return sorted(ranks)


def profile_sensitivity(
    model: nn.Module,
    inventory: Inventory,
    evaluator: Evaluator,
    fractions: tuple[float, ...],
    rank_multiple: int = 4,
    progress: bool = True,
    covariances: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, list[SensitivityPoint]]:
    """Swap one layer at a time for its factorization at a few ranks; the model is restored afterwards.

    An `auto` layer is probed once per candidate method, so the rank search can compare methods."""
    jobs = [
        (info, method, rank)
        for info in inventory.compressible
        for method in info.candidates
        for rank in probe_ranks(info.full_rank_of(method), fractions, rank_multiple)
    ]
    result: dict[str, list[SensitivityPoint]] = {info.name: [] for info in inventory.compressible}
    for info, method, rank in tqdm(jobs, desc="sensitivity", disable=not progress, leave=False):
        original = get_submodule(model, info.name)
        covariance = (covariances or {}).get(info.name)
        set_submodule(model, info.name, build_factorized(original, method, rank, covariance))
        try:
            sync_memory_bank(model)
            error = evaluator.evaluate(model, with_auroc=False)["map_error"]
        finally:
            set_submodule(model, info.name, original)
        result[info.name].append(SensitivityPoint(rank, rank / info.full_rank_of(method), error, method))
    return result


def points_for(points: list[SensitivityPoint], method: str) -> list[SensitivityPoint]:
    """The probes of one method (points without a method belong to whichever the layer had)."""
    return [p for p in points if p.method in (method, "")]


def predicted_error(points: list[SensitivityPoint], full_rank: int, rank: int) -> float:
    """Interpolate the probed error linearly in log-rank (0 at full rank, at least 1 at rank 1)."""
    if rank >= full_rank:
        return 0.0
    anchors = sorted({(p.rank, p.map_error) for p in points} | {(full_rank, 0.0)})
    if anchors[0][0] > 1:
        anchors.insert(0, (1, max(1.0, anchors[0][1])))
    for (r0, e0), (r1, e1) in itertools.pairwise(anchors):
        if r0 <= rank <= r1:
            if r1 == r0:
                return e0
            t = (math.log(rank) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return e0 + t * (e1 - e0)
    return anchors[0][1]


def sensitivity_as_dict(profile: dict[str, list[SensitivityPoint]]) -> dict[str, list[dict[str, float]]]:
    return {name: [asdict(point) for point in points] for name, points in profile.items()}
