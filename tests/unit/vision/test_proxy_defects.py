"""Synthetic defects for comparing heads without labels: local, varied, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from fixture_parts import aligned_parts

from vision.proxy_defects import KINDS, synthetic_defects


def test_each_good_image_gets_one_local_copy_of_each_kind_the_same_every_time() -> None:
    good = aligned_parts(5)
    defects = synthetic_defects(good, seed=3)
    assert defects.shape == (len(good) * len(KINDS), *good.shape[1:]) and defects.dtype == np.uint8
    assert np.array_equal(defects, synthetic_defects(good, seed=3))
    assert not np.array_equal(defects, synthetic_defects(good, seed=4))
    for index, copy in enumerate(defects):
        source = good[index // len(KINDS)].astype(int)
        changed = np.abs(copy.astype(int) - source).max(axis=-1) > 8  # visibly, not a blur's last level
        assert 0 < changed.mean() < 0.1, (
            f"copy {index} ({KINDS[index % len(KINDS)]}) changed {changed.mean():.1%}"
        )


def test_fewer_than_two_images_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 images"):
        synthetic_defects(aligned_parts(1))
