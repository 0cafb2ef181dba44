"""A recurring harmless mark: a paper label stuck on good parts (a batch sticker, an inspection tag).

A model trained on parts without labels flags every labelled part, although nothing is wrong with it:
the line's classic recurring false alarm, and what teaching a model "this is normal" is for
(`vision.teach`). Used by the teach benchmark and the teaching integration test.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Placement = Literal["fixed", "varying"]
# Label size and where it goes, as shares of the frame (at 256 px: 34 x 18 px, between the lower holes of
# the `bracket` plate).
LABEL_SIZE = (0.133, 0.07)
FIXED_CENTRE = (0.5, 0.69)
FIXED_JITTER = 0.02
VARYING_BOX = (0.3, 0.35, 0.66, 0.72)  # x0, y0, x1, y1: the inner part of the plate


def sticker_centre(rng: np.random.Generator, placement: Placement) -> tuple[float, float]:
    """Where the next label goes (shares of width and height)."""
    if placement == "fixed":
        dx, dy = rng.uniform(-FIXED_JITTER, FIXED_JITTER, size=2)
        return FIXED_CENTRE[0] + float(dx), FIXED_CENTRE[1] + float(dy)
    if placement == "varying":
        x0, y0, x1, y1 = VARYING_BOX
        return float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
    raise ValueError(f"placement must be 'fixed' or 'varying', got {placement!r}")


def paint_sticker(image: np.ndarray, rng: np.random.Generator, placement: Placement = "fixed") -> np.ndarray:
    """A copy of `image` (uint8 HxWx3, RGB or BGR: the label is grey-white) with a label painted on:
    off-white paper, a thin border and a few barcode bars, slightly rotated."""
    height, width = image.shape[:2]
    centre_x, centre_y = sticker_centre(rng, placement)
    label_w, label_h = LABEL_SIZE[0] * width, LABEL_SIZE[1] * height
    paper = float(rng.uniform(215, 240))
    label = np.full((round(label_h), round(label_w), 3), paper, np.float32)
    cv2.rectangle(label, (0, 0), (label.shape[1] - 1, label.shape[0] - 1), (90, 90, 90), 1)
    x = 3
    while x < label.shape[1] - 3:
        bar = int(rng.integers(1, 3))
        cv2.rectangle(label, (x, 3), (x + bar - 1, label.shape[0] - 5), (35, 35, 35), -1)
        x += bar + int(rng.integers(1, 3))
    angle = float(rng.uniform(-6, 6))
    matrix = cv2.getRotationMatrix2D((label.shape[1] / 2, label.shape[0] / 2), angle, 1.0)
    matrix[:, 2] += (centre_x * width - label.shape[1] / 2, centre_y * height - label.shape[0] / 2)
    ones = np.ones(label.shape[:2], np.float32)
    warped = cv2.warpAffine(label, matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(ones, matrix, (width, height), flags=cv2.INTER_LINEAR)[:, :, None]
    out = image.astype(np.float32) * (1.0 - alpha) + warped * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
