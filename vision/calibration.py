"""Decision thresholds: from good parts only (a target false-reject rate) or, with labels, F1-optimal.

With a handful of held-back good images an empirical 99th percentile is just the maximum, which the next
good part exceeds half the time. So the threshold is the larger of the empirical quantile and a Student-t
prediction bound (wide when few images were seen, close to the normal quantile with many), plus a small
relative margin: a line should not start by rejecting good parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vision.student_t import t_quantile

# With a single calibration image there is no spread to measure: allow this much above it.
SINGLE_IMAGE_HEADROOM = 0.25


def threshold_from_good_scores(
    scores: Sequence[float] | np.ndarray, target_false_reject_rate: float, margin: float = 0.02
) -> float:
    """Threshold that rejects at most about `target_false_reject_rate` of good parts."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("calibration needs at least one good-image score")
    if not np.all(np.isfinite(values)):
        raise ValueError("calibration scores must be finite")
    if not 0.0 < target_false_reject_rate < 1.0:
        raise ValueError(f"target_false_reject_rate must be in (0, 1), got {target_false_reject_rate}")
    quantile = 1.0 - target_false_reject_rate
    count = values.size
    if count == 1:
        predicted = values[0] + SINGLE_IMAGE_HEADROOM * abs(values[0])
    else:
        spread = values.std(ddof=1)
        predicted = values.mean() + t_quantile(quantile, count - 1) * spread * math.sqrt(1.0 + 1.0 / count)
    base = max(float(np.quantile(values, quantile)), float(predicted))
    if count < 1.0 / target_false_reject_rate:
        # Too few images to see the tail: never start below the worst good part seen.
        base = max(base, float(values.max()))
    return base + margin * abs(base)


def threshold_best_f1(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The F1-optimal image threshold when labelled defects are available."""
    from vision import metrics  # only the labelled path needs it

    values = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(labels).ravel()
    if values.size != truth.size or values.size == 0:
        raise ValueError(f"need matching non-empty scores and labels, got {values.size} and {truth.size}")
    if len(np.unique(truth)) < 2:
        raise ValueError("F1 calibration needs both good (0) and defective (1) images")
    _, threshold = metrics.best_f1_threshold(truth, values)
    return float(threshold)
