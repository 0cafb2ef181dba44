"""Which frames are uncertain enough to escalate: a band around the threshold, sized from recent scores.

Calibration uses a rolling window of the station's own recent edge scores (all parts, no labels needed):
the band's half-width is the `target_rate` quantile of the relative distance |score - threshold| / threshold
over the window, so about `target_rate` of the parts the line has been making fall inside it. Distances
are relative to the threshold in force, so an operator's threshold change keeps the band meaningful.
Until `min_samples` scores are in, the band is `initial_width`; it is always clamped to
[`min_width`, `max_width`].
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class EscalationBand:
    """Thread-safe: the inspection thread observes, the API thread reads the width."""

    def __init__(
        self,
        target_rate: float,
        window: int,
        min_samples: int,
        initial_width: float,
        min_width: float,
        max_width: float,
        recompute_every: int = 20,
    ) -> None:
        if not 0.0 < target_rate < 1.0:
            raise ValueError(f"target_rate must be in (0, 1), got {target_rate}")
        if not 0.0 <= min_width <= max_width:
            raise ValueError(f"band widths need 0 <= min_width <= max_width, got {min_width}, {max_width}")
        self.target_rate = target_rate
        self.min_samples = min(min_samples, window)
        self.min_width = min_width
        self.max_width = max_width
        self._distances: deque[float] = deque(maxlen=window)
        self._width = self._clamp(initial_width)
        self._recompute_every = max(1, recompute_every)
        self._since_recompute = 0
        self._lock = threading.Lock()

    @property
    def half_width(self) -> float:
        """Relative half-width: a score is in the band when |score - threshold| <= half_width * threshold."""
        return self._width

    @property
    def calibrated(self) -> bool:
        return len(self._distances) >= self.min_samples

    def bounds(self, threshold: float) -> tuple[float, float]:
        """The band in score units at `threshold`."""
        width = self._width * threshold
        return threshold - width, threshold + width

    def observe(self, score: float, threshold: float) -> bool:
        """Record one judged part and say whether it falls inside the band."""
        distance = abs(score - threshold) / threshold if threshold > 0 else float("inf")
        with self._lock:
            self._distances.append(distance)
            self._since_recompute += 1
            if self._since_recompute >= self._recompute_every and self.calibrated:
                self._since_recompute = 0
                quantile = float(np.quantile(np.asarray(self._distances), self.target_rate))
                self._width = self._clamp(quantile)
            return distance <= self._width

    def _clamp(self, width: float) -> float:
        return min(self.max_width, max(self.min_width, width))
