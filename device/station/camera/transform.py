"""The capture stage's image work: check what a source returned, crop to the region of interest, resize."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from device.config import RegionOfInterest
from device.station.camera.base import CorruptFrame


def checked_frame(image: Any) -> np.ndarray:
    """A source's image checked and kept at its own channel count: HxW (mono), HxWx3 (BGR) or HxWx4
    (BGRA). Anything else is a broken frame, not a reason to crash capture."""
    if not isinstance(image, np.ndarray):
        raise CorruptFrame(f"source returned {type(image).__name__}, expected an image array")
    if image.dtype != np.uint8:
        raise CorruptFrame(f"frame dtype {image.dtype}, expected uint8")
    if image.size == 0:
        raise CorruptFrame(f"empty frame (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)):
        return image
    raise CorruptFrame(f"frame shape {image.shape}, expected HxW, HxWx3 or HxWx4")


def to_bgr(image: Any) -> np.ndarray:
    """A source's image as HxWx3 BGR uint8 (mono and BGRA converted); a broken frame is CorruptFrame."""
    checked = checked_frame(image)
    if checked.ndim == 2:
        return cv2.cvtColor(checked, cv2.COLOR_GRAY2BGR)
    if checked.shape[2] == 4:
        return cv2.cvtColor(checked, cv2.COLOR_BGRA2BGR)
    return checked


def clip_roi(roi: RegionOfInterest, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the ROI inside a width x height frame; None if they do not overlap."""
    x0, y0 = min(roi.x, width), min(roi.y, height)
    x1, y1 = min(roi.x + roi.width, width), min(roi.y + roi.height, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def crop_and_resize(
    image: np.ndarray, box: tuple[int, int, int, int] | None, width: int, height: int, nearest: bool = False
) -> np.ndarray:
    """Crop to `box` (from clip_roi) and resize to width x height. Masks use nearest-neighbour so they
    stay binary; images shrink with INTER_AREA (no aliasing) and grow with INTER_LINEAR."""
    if box is not None:
        x0, y0, x1, y1 = box
        image = image[y0:y1, x0:x1]
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(image)
    if nearest:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def roi_view(image: np.ndarray, roi: RegionOfInterest | None, width: int, height: int) -> np.ndarray:
    """A raw frame as the model sees it under `roi`: cropped to the ROI (the whole frame when there is
    none or it lies outside the frame), resized to width x height, as BGR. Capture does this to every
    frame, and the ROI preview does it to the raw frames it keeps, so both judge the same pixels.

    Resized before the colour conversion: a mono camera's frame shrinks at one channel (1280x1024 to
    256 px: 0.7 instead of 3.2 ms with INTER_AREA), the same pixels as converting first."""
    image = checked_frame(image)
    frame_height, frame_width = image.shape[:2]
    box = clip_roi(roi, frame_width, frame_height) if roi is not None else None
    return to_bgr(crop_and_resize(image, box, width, height))
