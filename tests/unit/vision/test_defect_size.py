"""Defect sizes from masks and detection per size band: the figures the evaluation's size table shows."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vision.defect_size import BAND_EDGES_PX, DefectSize, measure, size_bands, write_plot


def _write_mask(path, shape, centre, radius) -> None:
    mask = np.zeros(shape, np.uint8)
    if radius:
        cv2.circle(mask, centre, radius, 255, thickness=-1)
    cv2.imwrite(str(path), mask)


def test_measure_gives_the_discs_diameter_in_the_source_and_at_the_input(tmp_path) -> None:
    path = tmp_path / "disc.png"
    _write_mask(path, (200, 400), (100, 100), 20)
    size = measure(path, input_size=100)
    assert size is not None
    assert size.source_diameter_px == pytest.approx(40, rel=0.05)
    # 400x200 -> 100x100 keeps an eighth of the area: the diameter shrinks by sqrt(8).
    assert size.input_diameter_px == pytest.approx(size.source_diameter_px / math.sqrt(8), rel=1e-6)
    assert size.source_area_px == int(np.count_nonzero(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)))


def test_an_empty_mask_has_no_size_and_an_unreadable_one_is_named(tmp_path) -> None:
    empty = tmp_path / "empty.png"
    _write_mask(empty, (50, 50), (0, 0), 0)
    assert measure(empty, 64) is None
    with pytest.raises(ValueError, match=r"missing\.png"):
        measure(tmp_path / "missing.png", 64)


def _size(diameter: float) -> DefectSize:
    return DefectSize(source_area_px=1, source_diameter_px=diameter * 2, input_diameter_px=diameter)


def test_size_bands_count_detections_per_band_and_leave_empty_bands_out() -> None:
    sizes = [_size(1.0), _size(1.5), _size(12.0), _size(100.0)]
    scores = [0.5, 2.0, 3.0, 4.0]
    rows = size_bands(sizes, scores, threshold=1.0)
    assert [r["images"] for r in rows] == [2, 1, 1]
    assert rows[0]["band"] == f"< {BAND_EDGES_PX[0]:g} px"
    assert rows[0]["detected_at_threshold"] == 0.5
    assert rows[0]["median_score_over_threshold"] == pytest.approx(1.25)
    assert rows[-1]["band"] == f">= {BAND_EDGES_PX[-1]:g} px" and rows[-1]["detected_at_threshold"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        size_bands(sizes, scores[:2], threshold=1.0)


def test_write_plot_writes_a_png(tmp_path) -> None:
    path = write_plot([_size(3.0), _size(20.0)], [0.4, 2.0], ["crack", "hole"], 1.0, tmp_path / "p.png")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100
