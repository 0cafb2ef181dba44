"""Threshold calibration: few good images give a cautious threshold, labelled data an F1-optimal one."""

from __future__ import annotations

import numpy as np
import pytest

from vision.calibration import threshold_best_f1, threshold_from_good_scores


def test_threshold_sits_above_every_good_score_when_images_are_few() -> None:
    scores = [10.0, 10.5, 11.0, 10.2, 10.8]
    threshold = threshold_from_good_scores(scores, target_false_reject_rate=0.01)
    assert threshold > max(scores)
    # More evidence of a tight distribution gives a tighter threshold.
    many = np.random.default_rng(0).normal(10.5, 0.3, 400)
    assert threshold_from_good_scores(many, 0.01) < threshold


def test_threshold_follows_the_target_false_reject_rate_with_many_images() -> None:
    scores = np.random.default_rng(1).normal(10.0, 1.0, 5000)
    threshold = threshold_from_good_scores(scores, target_false_reject_rate=0.05, margin=0.0)
    assert 0.04 <= (scores >= threshold).mean() <= 0.06


def test_bad_calibration_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        threshold_from_good_scores([], 0.01)
    with pytest.raises(ValueError, match="finite"):
        threshold_from_good_scores([1.0, float("nan")], 0.01)
    with pytest.raises(ValueError, match="false_reject_rate"):
        threshold_from_good_scores([1.0, 2.0], 1.5)


def test_f1_threshold_separates_labelled_scores() -> None:
    scores = [1.0, 2.0, 3.0, 7.0, 8.0, 9.0]
    labels = [0, 0, 0, 1, 1, 1]
    threshold = threshold_best_f1(scores, labels)
    assert 3.0 < threshold <= 7.0
    with pytest.raises(ValueError, match="both good"):
        threshold_best_f1(scores, [0] * 6)
