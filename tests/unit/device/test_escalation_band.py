"""Band calibration: about `target_rate` of the parts the line makes fall inside the escalation band."""

from __future__ import annotations

import numpy as np
import pytest

from device.station.escalation.band import EscalationBand


def _band(**changes: float) -> EscalationBand:
    options = {
        "target_rate": 0.05,
        "window": 2000,
        "min_samples": 200,
        "initial_width": 0.1,
        "min_width": 0.0,
        "max_width": 1.0,
    }
    options.update(changes)
    return EscalationBand(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [0.02, 0.05, 0.1])
def test_calibrated_band_escalates_about_the_target_rate(target: float) -> None:
    rng = np.random.default_rng(0)
    threshold = 2.0
    band = _band(target_rate=target)
    for score in rng.gamma(4.0, 0.35, 3000):  # a skewed good-part score distribution around the threshold
        band.observe(float(score), threshold)
    assert band.calibrated
    fresh = rng.gamma(4.0, 0.35, 20_000)
    rate = float(np.mean([band.observe(float(s), threshold) for s in fresh]))
    assert target * 0.7 <= rate <= target * 1.3, rate
    low, high = band.bounds(threshold)
    assert low < threshold < high


def test_initial_width_until_calibrated_and_widths_are_clamped() -> None:
    band = _band(initial_width=0.1, min_samples=100)
    assert not band.calibrated and band.half_width == pytest.approx(0.1)
    assert band.observe(1.05, 1.0) and not band.observe(1.2, 1.0)
    for _ in range(200):  # every part far from the threshold: the quantile is wide, the clamp holds it
        band.observe(10.0, 1.0)
    assert band.calibrated and band.half_width == pytest.approx(1.0)
    narrow = _band(min_width=0.02, min_samples=50)
    for _ in range(100):  # every part exactly at the threshold: the quantile is 0, the floor holds
        narrow.observe(1.0, 1.0)
    assert narrow.half_width == pytest.approx(0.02)


def test_band_is_relative_to_the_threshold_in_force() -> None:
    band = _band(initial_width=0.1)
    assert band.bounds(2.0) == pytest.approx((1.8, 2.2))
    assert band.observe(2.15, 2.0) and not band.observe(2.15, 1.0)


def test_bad_band_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="target_rate"):
        _band(target_rate=0.0)
    with pytest.raises(ValueError, match="min_width"):
        _band(min_width=0.5, max_width=0.1)
