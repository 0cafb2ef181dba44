"""Inventory, sensitivity and rank selection on a small model: budgets are met, or refused clearly."""

from __future__ import annotations

import pytest
import torch

from compression.budget import parse_budget
from compression.errors import BudgetError
from compression.evaluation import Evaluator
from compression.factorize import apply_ranks
from compression.inventory import build_inventory, count_params
from compression.rank_selection import select_ranks
from compression.sensitivity import profile_sensitivity

from .conftest import toy_images


@pytest.fixture(scope="module")
def profiled(toy_model):
    inventory = build_inventory(toy_model, torch.zeros(1, 32, 32, 3, dtype=torch.uint8), min_params=500)
    evaluator = Evaluator.build(toy_model, toy_images(6, seed=5))
    sensitivity = profile_sensitivity(toy_model, inventory, evaluator, (0.25, 0.5), progress=False)
    return inventory, evaluator, sensitivity


def test_inventory_counts_params_macs_and_skips_grouped(toy_model, profiled) -> None:
    inventory, _, _ = profiled
    layers = inventory.by_name()
    assert inventory.total_params == count_params(toy_model)
    # conv 3->32 3x3 stride 2 on 32x32: 16*16 outputs x 32 x 27
    assert layers["backbone.0"].macs == 16 * 16 * 32 * 27
    assert layers["backbone.0"].method == "tucker2"
    assert layers["backbone.6"].method == "svd" and layers["backbone.6"].compressible
    assert not layers["backbone.4"].compressible and "groups=4" in layers["backbone.4"].reason
    assert layers["memory_bank.similarity"].macs == 16 * 16 * 48 * 64
    assert sum(layer.latency_share for layer in inventory.layers) <= 1.0 + 1e-6


def test_sensitivity_probes_every_compressible_layer_and_falls_with_rank(profiled) -> None:
    inventory, _, sensitivity = profiled
    assert set(sensitivity) == {layer.name for layer in inventory.compressible}
    low, high = [], []
    for points in sensitivity.values():
        ordered = sorted(points, key=lambda p: p.rank)
        assert all(p.map_error > 0 for p in ordered)
        low.append(ordered[0].map_error)
        high.append(ordered[-1].map_error)
    assert sum(low) > sum(high)


@pytest.mark.parametrize("share", [0.6, 0.35])
def test_params_budget_is_met(toy_model, profiled, share: float) -> None:
    inventory, _, sensitivity = profiled
    plan = select_ranks(toy_model, inventory, sensitivity, parse_budget(f"params={share}"), rank_multiple=2)
    methods = {i.name: i.method for i in inventory.compressible}
    compressed = apply_ranks(toy_model, plan.ranks, methods)
    assert count_params(compressed) == plan.params
    assert count_params(compressed) <= share * count_params(toy_model)


def test_fixed_rank_is_kept_and_drop_budget_is_measured(toy_model, profiled) -> None:
    inventory, evaluator, sensitivity = profiled
    methods = {i.name: i.method for i in inventory.compressible}
    plan = select_ranks(
        toy_model,
        inventory,
        sensitivity,
        parse_budget("params=0.5"),
        fixed_ranks={"backbone.6": 6},
        rank_multiple=2,
    )
    assert plan.ranks["backbone.6"] == 6
    plan = select_ranks(
        toy_model,
        inventory,
        sensitivity,
        parse_budget("drop=0.05"),
        rank_multiple=2,
        measure_drop=lambda ranks, chosen: evaluator.drop(apply_ranks(toy_model, ranks, chosen)),
    )
    assert plan.measured_drop is not None and plan.measured_drop <= 0.05
    assert evaluator.drop(apply_ranks(toy_model, plan.ranks, methods)) <= 0.05
    assert plan.params < count_params(toy_model)


def test_impossible_budget_and_bad_fixed_rank_raise(toy_model, profiled) -> None:
    inventory, _, sensitivity = profiled
    with pytest.raises(BudgetError, match="cannot be met: the smallest reachable model"):
        select_ranks(toy_model, inventory, sensitivity, parse_budget("params=0.01"))
    with pytest.raises(BudgetError, match=r"backbone\.4"):
        select_ranks(
            toy_model, inventory, sensitivity, parse_budget("params=0.5"), fixed_ranks={"backbone.4": 2}
        )
