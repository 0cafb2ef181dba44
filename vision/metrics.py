"""Anomaly-detection metrics in plain numpy (no scikit-learn on the edge box or in the training extra).

Conventions: label 1 = defect, higher score = more anomalous, an item is rejected when score >= threshold.
AUROC is the Mann-Whitney statistic with tied scores counted as half, so a constant scorer gets exactly
0.5 rather than an order-dependent number. AUPRO follows the MVTec AD paper (Bergmann et al., 2021):
per-region overlap averaged over ground-truth connected components, integrated over the false positive
rate up to `max_fpr` and divided by `max_fpr`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike


def _labels_and_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise ValueError("labels and scores are empty")
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defect)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    return y.astype(bool), s


def _require_both_classes(y: np.ndarray, what: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        present = "defect" if positives else "good"
        raise ValueError(f"{what} needs both good and defect items; only {present} items were given")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    rank_sum = float(_average_ranks(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Probability that a random defect scores above a random good item (ties count half)."""
    y, s = _labels_and_scores(labels, scores)
    _require_both_classes(y, "image AUROC")
    return _auroc(y, s)


def auroc_per_kind(kinds: Sequence[str], scores: ArrayLike, good: str = "good") -> dict[str, float]:
    """Image AUROC of each defect kind against all good items, kinds in order of first appearance.

    One pooled AUROC hides which faults a model misses: a faint stain at 0.6 disappears behind cracks at
    1.0. Items whose kind is `good` are the negatives of every comparison.
    """
    names = [str(kind) for kind in kinds]
    values = np.asarray(scores, dtype=np.float64).ravel()
    if len(names) != values.size:
        raise ValueError(f"kinds and scores differ in length: {len(names)} vs {values.size}")
    if not np.isfinite(values).all():
        raise ValueError("scores contain NaN or infinity")
    is_good = np.array([name == good for name in names], dtype=bool)
    if not is_good.any():
        raise ValueError(f"AUROC per kind needs {good!r} items to compare each kind against; none were given")
    result: dict[str, float] = {}
    for kind in dict.fromkeys(name for name in names if name != good):
        chosen = is_good | np.array([name == kind for name in names], dtype=bool)
        result[kind] = _auroc(~is_good[chosen], values[chosen])
    return result


def _masks_and_maps(masks: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(masks)
    a = np.asarray(maps, dtype=np.float64)
    if m.shape != a.shape:
        raise ValueError(f"masks and anomaly maps differ in shape: {m.shape} vs {a.shape}")
    if m.ndim == 2:
        m, a = m[None], a[None]
    if m.ndim != 3 or m.size == 0:
        raise ValueError(f"expected masks/maps shaped [N, H, W] or [H, W], got {m.shape}")
    if not np.isfinite(a).all():
        raise ValueError("anomaly maps contain NaN or infinity")
    return m.astype(bool), a


def pixel_auroc(masks: ArrayLike, maps: ArrayLike) -> float:
    """AUROC over all pixels of all images pooled together."""
    m, a = _masks_and_maps(masks, maps)
    y = m.ravel()
    _require_both_classes(y, "pixel AUROC")
    return _auroc(y, a.ravel())


def _fraction_at_or_above(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share of `sorted_values` >= each threshold, for all thresholds at once."""
    below = np.searchsorted(sorted_values, thresholds, side="left")
    return (sorted_values.size - below) / sorted_values.size


def aupro(masks: ArrayLike, maps: ArrayLike, max_fpr: float = 0.3, num_thresholds: int = 200) -> float:
    """Normalised area under the per-region-overlap curve up to `max_fpr` (1.0 is perfect).

    Thresholds are `num_thresholds` evenly spaced values from the lowest to the highest map value; the
    curve starts at (0, 0) (nothing flagged) and is linearly interpolated at `max_fpr`.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be within (0, 1], got {max_fpr!r}")
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds!r}")
    m, a = _masks_and_maps(masks, maps)
    _require_both_classes(m.ravel(), "AUPRO")
    thresholds = np.linspace(a.min(), a.max(), num_thresholds)
    fpr = _fraction_at_or_above(np.sort(a[~m]), thresholds)
    overlaps = []
    for mask, amap in zip(m, a, strict=True):
        if not mask.any():
            continue
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        for component in range(1, count):
            region_values = np.sort(amap[labels == component])
            overlaps.append(_fraction_at_or_above(region_values, thresholds))
    pro = np.mean(overlaps, axis=0)
    # Thresholds rise, so FPR falls: reverse to walk the curve from (0, 0) outwards.
    x = np.r_[0.0, fpr[::-1]]
    y = np.r_[0.0, pro[::-1]]
    return _area_up_to(x, y, max_fpr) / max_fpr


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under y(x) for x in [0, limit]; x must be non-decreasing."""
    inside = x <= limit
    xs, ys = x[inside], y[inside]
    if xs[-1] < limit:
        later = np.flatnonzero(~inside)
        if later.size:
            j = later[0]
            y_limit = y[j - 1] + (y[j] - y[j - 1]) * (limit - x[j - 1]) / (x[j] - x[j - 1])
        else:
            y_limit = ys[-1]
        xs, ys = np.r_[xs, limit], np.r_[ys, y_limit]
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


def _confusion(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[int, int, int]:
    predicted = s >= threshold
    true_positive = int((predicted & y).sum())
    return true_positive, int((predicted & ~y).sum()), int((~predicted & y).sum())


def f1_at_threshold(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """F1 of the defect class when items scoring >= threshold are rejected."""
    y, s = _labels_and_scores(labels, scores)
    if not y.any():
        raise ValueError("F1 needs at least one defect item; only good items were given")
    tp, fp, fn = _confusion(y, s, float(threshold))
    return 2 * tp / (2 * tp + fp + fn)


def recall_at_false_reject_rate(labels: ArrayLike, scores: ArrayLike, rate: float) -> float:
    """Share of defects caught by the threshold that rejects at most `rate` of the good images: what a
    line gets when quality allows that many false rejects."""
    y, s = _labels_and_scores(labels, scores)
    _require_both_classes(y, "recall at a false-reject rate")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be within [0, 1), got {rate}")
    good = np.sort(s[y == 0])
    allowed = int(np.floor(rate * len(good)))
    threshold = good[len(good) - 1 - allowed]  # strictly above it: at most `allowed` good images rejected
    return float(np.mean(s[y == 1] > threshold))


def best_f1_threshold(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """(best F1, the threshold reaching it). Candidates are the observed scores; on a tie the highest
    threshold wins, because it rejects the fewest good parts."""
    y, s = _labels_and_scores(labels, scores)
    if not y.any():
        raise ValueError("F1 needs at least one defect item; only good items were given")
    order = np.argsort(-s, kind="mergesort")
    sorted_scores, sorted_labels = s[order], y[order]
    # Evaluate only at the last index of each run of equal scores: all of a tie is rejected together.
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    tp = np.cumsum(sorted_labels)[last_of_run]
    flagged = (np.arange(s.size) + 1)[last_of_run]
    f1 = 2 * tp / (flagged + y.sum())
    best = int(np.argmax(f1))  # first maximum = highest threshold
    return float(f1[best]), float(sorted_scores[last_of_run][best])


def false_reject_rate(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """Share of good items scoring at or above the threshold (good parts the line would throw away)."""
    y, s = _labels_and_scores(labels, scores)
    if y.all():
        raise ValueError("false reject rate needs at least one good item; only defect items were given")
    return float((s[~y] >= threshold).mean())


__all__ = (
    "aupro",
    "auroc_per_kind",
    "best_f1_threshold",
    "f1_at_threshold",
    "false_reject_rate",
    "image_auroc",
    "pixel_auroc",
    "recall_at_false_reject_rate",
)
