"""Defect painters for the hard suite: the faint, the tiny and the texture-level faults a line really sees.

Like `vision.data.defects`, each painter changes only the pixels inside the region it returns, so the mask
is exactly the ground truth; unlike them there is no contrast floor: a faint stain is meant to be faint.
Strengths are in the [0, 1] scale of the scene before the camera (lighting, noise and JPEG come after).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from vision.data.defects import Painter, Scene
from vision.data.shapes import bezier_path, blob_polygon, polygon_mask, polyline_mask

# A "small spot" covers at most this share of the frame (0.2 %: 131 pixels at 256 x 256) ...
MAX_SPOT_FRACTION = 0.002
# ... and at least this share, so it still covers a few pixels at the smallest image sizes.
MIN_SPOT_FRACTION = 0.0004
# Region-level defects (stains, blur, patches) cover at least this share, like the legacy painters.
MIN_REGION_FRACTION = 0.0012

# (rng, size, zoom) -> a float32 frame of some surface: where copied and foreign patches come from.
PatchSource = Callable[[np.random.Generator, int, float], np.ndarray]


def _blob(
    scene: Scene, rng: np.random.Generator, radius: tuple[float, float], roughness: float = 0.3
) -> np.ndarray:
    """An irregular region well inside the frame, retried until it is not a sliver."""
    minimum = MIN_REGION_FRACTION * scene.size * scene.size
    mask = np.zeros_like(scene.surface)
    for _ in range(12):
        outline = blob_polygon(rng, scene.anchor(rng), rng.uniform(*radius) * scene.size, roughness)
        mask = polygon_mask(scene.size, outline) & scene.surface
        if mask.sum() >= minimum:
            break
    return mask


def _edge_weight(mask: np.ndarray, low: float) -> np.ndarray:
    """`low` at the region's rim rising to 1 inside: a soft-looking change that still ends at the mask."""
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ramp = np.clip(depth / max(float(depth.max()) * 0.5, 1.0), 0.0, 1.0)
    return np.asarray((low + (1.0 - low) * ramp)[mask], dtype=np.float32)


def _change(scene: Scene, mask: np.ndarray, new_values: np.ndarray) -> None:
    scene.image[mask] = np.clip(new_values, 0.0, 1.0).astype(np.float32)


def faint_stain_painter(
    delta: tuple[float, float] = (0.05, 0.08), radius: tuple[float, float] = (0.05, 0.11)
) -> Painter:
    """A low-contrast water or grease mark: a few grey levels darker or lighter, slightly tinted."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        mask = _blob(scene, rng, radius)
        tint = np.asarray(rng.uniform(0.7, 1.0, 3), np.float32)
        tint /= float(tint.mean())
        sign = 1.0 if rng.random() < 0.35 else -1.0
        step = np.float32(sign * rng.uniform(*delta)) * tint
        weight = _edge_weight(mask, 0.5)[:, None]
        _change(scene, mask, scene.image[mask] + weight * step)
        return mask

    return paint


def blur_painter(
    sigma: tuple[float, float] = (1.5, 3.0), radius: tuple[float, float] = (0.06, 0.12)
) -> Painter:
    """Loss of texture: a worn, polished or smeared region whose fine grain is gone, colour unchanged."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        scale = scene.size / 256
        blurred = cv2.GaussianBlur(scene.image, (0, 0), float(rng.uniform(*sigma)) * scale)
        best, best_change = np.zeros_like(scene.surface), -1.0
        for _ in range(6):  # prefer a place with grain to lose; a flat spot shows no change at all
            mask = _blob(scene, rng, radius)
            change = float(np.abs(blurred[mask] - scene.image[mask]).mean()) if mask.any() else 0.0
            if change > best_change:
                best, best_change = mask, change
            if change >= 0.02:
                break
        _change(scene, best, blurred[best])
        return best

    return paint


def spot_painter(contrast: tuple[float, float] = (0.22, 0.45)) -> Painter:
    """A tiny pit, inclusion or speck of dirt: at most MAX_SPOT_FRACTION of the frame."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        total = scene.size * scene.size
        low, high = MIN_SPOT_FRACTION * total, MAX_SPOT_FRACTION * total
        area = rng.uniform(low, high)
        mask = np.zeros_like(scene.surface)
        for _ in range(20):
            outline = blob_polygon(rng, scene.anchor(rng), math.sqrt(area / math.pi), 0.15, vertices=12)
            mask = polygon_mask(scene.size, outline) & scene.surface
            if mask.sum() > high:
                area *= 0.8
            elif mask.any():
                break
        if mask.sum() > high or not mask.any():  # degenerate tiny frames: a single pixel is still a spot
            mask = np.zeros_like(scene.surface)
            x, y = scene.anchor(rng)
            mask[int(y), int(x)] = True
        old = scene.image[mask]
        darker = float(old.mean()) > 0.35 if rng.random() < 0.8 else float(old.mean()) > 0.65
        step = float(rng.uniform(*contrast)) * (-1.0 if darker else 1.0)
        _change(scene, mask, old + np.float32(step))
        return mask

    return paint


def _thicken(line: np.ndarray, width: int, across_rows: bool) -> np.ndarray:
    """A 1-px line made exactly `width` px wide by stacking shifted copies across its direction
    (OpenCV's thick lines add round joints that are wider than the stroke)."""
    mask = line.copy()
    for offset in range(1, width):
        if across_rows:
            mask[offset:] |= line[:-offset]
        else:
            mask[:, offset:] |= line[:, :-offset]
    return np.asarray(mask, dtype=bool)


def thin_scratch_painter(contrast: tuple[float, float] = (0.14, 0.28)) -> Painter:
    """A hairline scratch, 1-2 px wide at 256 px: long but barely there."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        size = scene.size
        start = scene.anchor(rng)
        length = rng.uniform(0.15, 0.4) * size
        angle = rng.uniform(0, 2 * math.pi)
        end = (start[0] + length * math.cos(angle), start[1] + length * math.sin(angle))
        width = max(1, round(int(rng.integers(1, 3)) * size / 256))
        line = polyline_mask(size, [bezier_path(rng, start, end, bend=0.1)], 1)
        mask = _thicken(line, width, across_rows=abs(math.cos(angle)) >= abs(math.sin(angle)))
        mask &= scene.surface
        old = scene.image[mask]
        lighter = float(old.mean()) < 0.5 if rng.random() < 0.8 else float(old.mean()) >= 0.5
        step = float(rng.uniform(*contrast)) * (1.0 if lighter else -1.0)
        _change(scene, mask, old + np.float32(step))
        return mask

    return paint


def color_shift_painter(
    shift: tuple[float, float] = (0.05, 0.09), radius: tuple[float, float] = (0.06, 0.12)
) -> Painter:
    """A region whose hue drifted (dye lot, coating thickness) with brightness and texture intact."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        mask = _blob(scene, rng, radius)
        direction = rng.normal(0.0, 1.0, 3).astype(np.float32)
        direction -= direction.mean()  # orthogonal to grey: luminance stays the same
        direction /= max(float(np.linalg.norm(direction)), 1e-6)
        offset = direction * np.float32(rng.uniform(*shift) * math.sqrt(3))
        weight = _edge_weight(mask, 0.6)[:, None]
        _change(scene, mask, scene.image[mask] + weight * offset)
        return mask

    return paint


def _matched(patch: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`patch` pixels with each channel's mean and spread set to `reference`'s: texture differs, tone not."""
    scale = reference.std(axis=0) / np.maximum(patch.std(axis=0), 1e-3)
    return np.asarray((patch - patch.mean(axis=0)) * scale + reference.mean(axis=0), dtype=np.float32)


def patch_painter(
    source: Callable[[np.random.Generator], PatchSource], radius: tuple[float, float] = (0.07, 0.12)
) -> Painter:
    """Texture that does not belong: a piece from elsewhere (another scale, another surface) set in.

    `source(rng)` picks where the piece comes from; its tone is matched to the region it replaces, so only
    the texture (grain size, orientation, structure) gives it away.
    """

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        mask = _blob(scene, rng, radius, roughness=0.2)
        render = source(rng)
        patch = render(rng, scene.size, 1.0)
        _change(scene, mask, _matched(patch[mask], scene.image[mask]))
        return mask

    return paint
