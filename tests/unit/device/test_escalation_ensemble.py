"""How the verifier's ensemble combines members (threshold-normalised scores and maps)."""

from __future__ import annotations

import numpy as np
import pytest

from device.plant.verifier import DEFAULT_ENSEMBLE_RULE, combine_members


def test_any_rule_rejects_when_one_member_rejects() -> None:
    maps = [np.array([[0.2, 1.4]]), np.array([[0.6, 0.4]])]
    score, heat = combine_members([1.4, 0.6], maps, "any")
    assert score == pytest.approx(1.4) and score >= 1.0  # the first member's reject stands
    np.testing.assert_allclose(heat, [[0.6, 1.4]])


def test_mean_rule_lets_a_calm_member_outvote_a_reject() -> None:
    score, heat = combine_members([1.4, 0.4], [np.array([[1.4]]), np.array([[0.4]])], "mean")
    assert score == pytest.approx(0.9) and score < 1.0
    np.testing.assert_allclose(heat, [[0.9]])


def test_unknown_rule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown ensemble rule 'vote'; choose one of any, mean"):
        combine_members([1.0], [np.zeros((1, 1))], "vote")


def test_default_is_the_rule_chosen_on_dev() -> None:
    assert DEFAULT_ENSEMBLE_RULE == "any"
