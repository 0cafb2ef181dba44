"""Healing recovers what factorization lost, on good images only; the deploy entry point returns a
smaller model that still behaves like the original."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from compression.evaluation import Evaluator
from compression.factorize import apply_ranks
from compression.healing import heal
from compression.inventory import count_params
from compression.layers import TTLinear, Tucker2Conv2d
from compression.methods import MethodError
from compression.pipeline import compress_for_deploy

from .conftest import toy_images

RANKS = {"backbone.2": 4, "backbone.6": 3, "backbone.8": 4}
METHODS = {"backbone.2": "tucker2", "backbone.6": "svd", "backbone.8": "svd"}


@pytest.mark.slow
def test_healing_lowers_distillation_loss_and_map_error(toy_model) -> None:
    torch.manual_seed(0)
    student = apply_ranks(toy_model, RANKS, METHODS)
    holdout = toy_images(6, seed=11)
    evaluator = Evaluator.build(toy_model, holdout)
    before = evaluator.evaluate(student)["map_error"]
    result = heal(
        student,
        toy_model,
        toy_images(24, seed=3),
        holdout,
        steps=60,
        lr=2e-3,
        eval_every=10,
        patience=10,
        track=lambda m: {"fidelity": evaluator.evaluate(m)["fidelity"]},
        progress=False,
    )
    after = evaluator.evaluate(student)["map_error"]
    assert result.steps_run == 60 and len(result.history) == 7
    assert result.best_val_loss < result.history[0]["val_loss"]
    assert after < before
    assert all("fidelity" in entry for entry in result.history)


def test_zero_heal_steps_is_a_no_op_and_bad_inputs_fail(toy_model) -> None:
    student = apply_ranks(toy_model, RANKS, METHODS)
    state = copy.deepcopy(student.state_dict())
    assert heal(student, toy_model, toy_images(2, 0), toy_images(2, 1), steps=0).steps_run == 0
    assert all(torch.equal(state[k], v) for k, v in student.state_dict().items())
    with pytest.raises(ValueError, match="at least one training and one validation image"):
        heal(student, toy_model, toy_images(2, 0), np.zeros((0, 32, 32, 3), np.uint8), steps=3)


@pytest.mark.slow
def test_compress_for_deploy_meets_budget_with_good_images_only(toy_model) -> None:
    images = list(toy_images(20, seed=4))
    compressed = compress_for_deploy(toy_model, images, budget="params=0.6", heal_steps=20, progress=False)
    assert count_params(compressed) <= 0.6 * count_params(toy_model)
    maps, scores = compressed(torch.from_numpy(toy_images(4, seed=12)))
    assert maps.shape == (4, 1, 32, 32) and bool(torch.isfinite(scores).all())
    assert not any(p.requires_grad for p in compressed.parameters())
    with pytest.raises(ValueError, match=r"params=2 must be a share"):
        compress_for_deploy(toy_model, images, budget="params=2", heal_steps=1, progress=False)


def test_compress_for_deploy_follows_per_layer_method_rules(toy_model) -> None:
    images = list(toy_images(12, seed=4))
    rules = {"backbone.8": "tt:6", "default_conv": "cp", "memory_bank": "dense"}
    compressed = compress_for_deploy(
        toy_model, images, budget="params=0.9", heal_steps=2, progress=False, methods=rules
    )
    tt = compressed.backbone[8]
    assert isinstance(tt, TTLinear) and tt.bond_dim <= 6
    assert type(compressed.memory_bank.similarity) is nn.Linear
    assert all(not isinstance(layer, Tucker2Conv2d) for layer in compressed.backbone)
    with pytest.raises(MethodError, match="no layer matches 'head'"):
        compress_for_deploy(
            toy_model, images, budget="params=0.9", heal_steps=1, progress=False, methods={"head": "svd"}
        )
