"""Metrics against small cases computed by hand, and AUROC against the pairwise definition."""

from __future__ import annotations

import numpy as np
import pytest

from vision.metrics import (
    aupro,
    auroc_per_kind,
    best_f1_threshold,
    f1_at_threshold,
    false_reject_rate,
    image_auroc,
    pixel_auroc,
    recall_at_false_reject_rate,
)


def test_auroc_perfect_inverted_and_constant_classifiers() -> None:
    labels = [0, 0, 1, 1]
    assert image_auroc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert image_auroc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert image_auroc(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auroc_counts_ties_as_half() -> None:
    # Defects score {0.5, 0.9}, goods {0.5, 0.2}: pairs win 0.5 + 1 + 1 + 1 out of 4.
    assert image_auroc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert image_auroc([True, False, False], [3, 3, 1]) == pytest.approx(0.75)


def test_auroc_matches_the_pairwise_definition_on_random_tied_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 12, 200).astype(float)  # many ties
    positives, negatives = scores[labels == 1], scores[labels == 0]
    pairs = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    assert image_auroc(labels, scores) == pytest.approx(pairs.mean())


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "only good"),
        ([1, 1], [0.1, 0.2], "only defect"),
        ([0, 1], [0.1], "differ in length"),
        ([0, 2], [0.1, 0.2], "0 \\(good\\) or 1"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([], [], "empty"),
    ],
)
def test_auroc_rejects_bad_input(labels: list, scores: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_auroc(labels, scores)


def test_pixel_auroc_pools_all_pixels() -> None:
    masks = np.zeros((2, 2, 2), bool)
    masks[0, 0, 0] = masks[1, 1, 1] = True
    maps = np.array([[[0.9, 0.1], [0.2, 0.3]], [[0.4, 0.95], [0.5, 0.8]]])
    # Defect pixels score 0.9 and 0.8; 6 good pixels: 0.1 0.2 0.3 0.4 0.95 0.5 -> 0.9 beats 5, 0.8 beats 5.
    assert pixel_auroc(masks, maps) == pytest.approx(10 / 12)
    with pytest.raises(ValueError, match="only good"):
        pixel_auroc(np.zeros((1, 2, 2), bool), maps[:1])
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_auroc(masks, maps[:1])


def test_aupro_perfect_map_is_one() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:4, 2:5] = True
    masks[1, 6:8, 0:2] = True
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)


def test_aupro_hand_computed_curve() -> None:
    # One 2x2 defect region, half of it found, and 1 of 12 good pixels flagged as well.
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    amap = np.zeros((4, 4))
    amap[0, 0] = amap[0, 1] = 1.0
    amap[3, 3] = 1.0
    # Curve points: (0, 0), (1/12, 0.5) for any threshold in (0, 1], (1, 1) at threshold 0.
    pro_at_limit = 0.5 + 0.5 * (0.3 - 1 / 12) / (1 - 1 / 12)
    area = 0.5 * (1 / 12) * 0.5 + (0.3 - 1 / 12) * (0.5 + pro_at_limit) / 2
    assert aupro(mask[None], amap[None]) == pytest.approx(area / 0.3)
    assert aupro(mask, amap, max_fpr=1.0) == pytest.approx(0.5 * (1 / 12) * 0.5 + (11 / 12) * 0.75)


def test_aupro_averages_regions_not_pixels() -> None:
    # Region A (1 px) fully found, region B (3 px) missed: PRO is 0.5 per region (0.25 if pixel-weighted).
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    mask[3, 1:4] = True
    amap = np.zeros((4, 4))
    amap[0, 0] = 1.0
    # Curve: (0, 0), (0, 0.5), (1, 1) -> area to 0.3 = 0.3 * (0.5 + 0.65) / 2.
    assert aupro(mask, amap) == pytest.approx(0.3 * (0.5 + 0.65) / 2 / 0.3)


def test_aupro_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="only good"):
        aupro(np.zeros((2, 4, 4), bool), np.random.default_rng(0).random((2, 4, 4)))
    with pytest.raises(ValueError, match="max_fpr"):
        aupro(np.ones((1, 2, 2), bool), np.ones((1, 2, 2)), max_fpr=0.0)


def test_f1_at_threshold_by_hand() -> None:
    labels = [1, 1, 0, 0, 1]
    scores = [0.9, 0.4, 0.6, 0.1, 0.7]
    # At 0.5: rejected 0.9 (defect), 0.6 (good), 0.7 (defect) -> TP 2, FP 1, FN 1.
    assert f1_at_threshold(labels, scores, 0.5) == pytest.approx(4 / 6)
    assert f1_at_threshold(labels, scores, 0.7) == pytest.approx(4 / 5)  # at-or-above counts as rejected
    with pytest.raises(ValueError, match="at least one defect"):
        f1_at_threshold([0, 0], [0.1, 0.2], 0.5)


def test_best_f1_threshold_by_hand() -> None:
    labels = [1, 1, 0, 0, 1]
    scores = [0.9, 0.4, 0.6, 0.1, 0.7]
    # Thresholds 0.9, 0.7, 0.6, 0.4, 0.1 give F1 2/4, 4/5, 4/6, 6/7, 6/8.
    f1, threshold = best_f1_threshold(labels, scores)
    assert (f1, threshold) == (pytest.approx(6 / 7), 0.4)
    assert f1_at_threshold(labels, scores, threshold) == pytest.approx(f1)


def test_best_f1_threshold_rejects_a_tie_together_and_prefers_the_higher_threshold() -> None:
    # Tied 0.5 scores must be rejected together: 0.9 -> 2/3, 0.5 -> 4/5.
    assert best_f1_threshold([1, 0, 1], [0.5, 0.5, 0.9]) == (pytest.approx(0.8), 0.5)
    # 0.9 and 0.6 both reach F1 2/3; the higher threshold throws away fewer good parts.
    assert best_f1_threshold([1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6]) == (pytest.approx(2 / 3), 0.9)


def test_false_reject_rate_counts_goods_at_or_above_threshold() -> None:
    labels = [0, 0, 0, 0, 1]
    scores = [0.1, 0.5, 0.5, 0.9, 0.95]
    assert false_reject_rate(labels, scores, 0.5) == pytest.approx(3 / 4)
    assert false_reject_rate(labels, scores, 1.0) == 0.0
    with pytest.raises(ValueError, match="at least one good"):
        false_reject_rate([1, 1], [0.2, 0.3], 0.5)


def test_auroc_per_kind_compares_each_kind_with_the_good_items_only() -> None:
    kinds = ["good", "good", "good", "crack", "crack", "faint", "faint"]
    scores = [0.1, 0.2, 0.6, 0.9, 0.8, 0.15, 0.3]
    result = auroc_per_kind(kinds, scores)
    assert list(result) == ["crack", "faint"]  # order of first appearance, good excluded
    assert result["crack"] == 1.0  # both cracks above every good item
    # faint 0.15 beats 0.1 only; faint 0.3 beats 0.1 and 0.2: 3 of 6 pairs.
    assert result["faint"] == pytest.approx(3 / 6)
    # The same as the pooled AUROC restricted to that kind and the good items.
    assert result["faint"] == image_auroc([0, 0, 0, 1, 1], [0.1, 0.2, 0.6, 0.15, 0.3])


def test_auroc_per_kind_counts_ties_as_half_and_rejects_bad_input() -> None:
    assert auroc_per_kind(["good", "spot"], [0.5, 0.5]) == {"spot": 0.5}
    assert auroc_per_kind(["ok", "spot"], [0.1, 0.5], good="ok") == {"spot": 1.0}
    with pytest.raises(ValueError, match="needs 'good' items"):
        auroc_per_kind(["crack", "spot"], [0.1, 0.5])
    with pytest.raises(ValueError, match="differ in length"):
        auroc_per_kind(["good", "spot"], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        auroc_per_kind(["good", "spot"], [0.1, float("nan")])
    assert auroc_per_kind(["good", "good"], [0.1, 0.2]) == {}


def test_recall_at_a_false_reject_rate_uses_the_threshold_quality_allows() -> None:
    good = np.arange(100, dtype=float)  # 0..99: at 1 % one good image may be rejected, so threshold 98
    defects = np.array([98.0, 98.5, 99.5, 150.0])
    labels = np.r_[np.zeros(100), np.ones(4)]
    scores = np.r_[good, defects]
    assert recall_at_false_reject_rate(labels, scores, 0.01) == 0.75  # 98.0 ties the threshold: missed
    assert recall_at_false_reject_rate(labels, scores, 0.0) == 0.5  # nothing above 99 may pass
    with pytest.raises(ValueError, match="both good and defect"):
        recall_at_false_reject_rate(np.zeros(3), np.arange(3.0), 0.01)
