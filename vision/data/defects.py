"""Defect painters shared by every product: scratch, crack, hole, stain, colour shift.

Each painter decides a region, changes only the pixels inside it and returns that region as the mask, so
the ground truth is exactly what changed. A contrast floor keeps every defect visible to a person at
256x256 even when its colour happens to be close to the surface underneath.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vision.data.shapes import (
    Point,
    bezier_path,
    blob_polygon,
    polygon_mask,
    polyline_mask,
    random_walk,
)

RGB = tuple[float, float, float]

# Mean absolute change per channel (0..1 scale) that every defect reaches before lighting and noise.
MIN_CONTRAST = 0.12
# Tiny defects are not "genuinely visible" at 256 px; painters retry until they cover at least this share.
MIN_AREA_FRACTION = 0.0012


@dataclass
class Scene:
    """A rendered product before the camera: float32 HxWx3 in [0, 1] plus where defects may land."""

    image: np.ndarray
    surface: np.ndarray  # bool HxW: pixels that belong to the product
    extras: dict[str, object] = field(default_factory=dict)
    _anchors: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def anchor(self, rng: np.random.Generator) -> Point:
        """A random point well inside the product, so a defect is not cut off by the frame or part edge."""
        if self._anchors is None:
            margin = max(2, int(0.08 * self.size))
            inner = cv2.erode(self.surface.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=margin)
            inner[:margin, :] = 0
            inner[-margin:, :] = 0
            inner[:, :margin] = 0
            inner[:, -margin:] = 0
            points = np.flatnonzero(inner)
            self._anchors = points if points.size else np.flatnonzero(self.surface)
        flat = int(self._anchors[rng.integers(self._anchors.size)])
        return float(flat % self.size), float(flat // self.size)


Painter = Callable[[Scene, np.random.Generator], np.ndarray]


def apply_change(scene: Scene, mask: np.ndarray, target: np.ndarray | Sequence[float], alpha: float) -> None:
    """Blend `target` into the masked pixels, raising alpha (or flipping brightness) to reach MIN_CONTRAST."""
    old = scene.image[mask]
    if old.size == 0:
        return
    target_array = np.asarray(target, np.float32)
    goal = target_array[mask] if target_array.ndim == 3 else np.broadcast_to(target_array, old.shape)
    difference = float(np.abs(goal - old).mean())
    if difference * alpha < MIN_CONTRAST and difference > 0:
        alpha = min(1.0, MIN_CONTRAST / difference)
    if difference * alpha < MIN_CONTRAST:
        # The colour is too close to the surface: go the other way in brightness.
        goal = np.full_like(old, 0.05 if float(old.mean()) > 0.5 else 0.95)
        alpha = 1.0
    scene.image[mask] = old + np.float32(alpha) * (goal - old)


def _retry(scene: Scene, rng: np.random.Generator, make: Callable[[], np.ndarray]) -> np.ndarray:
    minimum = MIN_AREA_FRACTION * scene.size * scene.size
    best = np.zeros_like(scene.surface)
    for _ in range(12):
        mask = make() & scene.surface
        if mask.sum() >= minimum:
            return mask
        if mask.sum() > best.sum():
            best = mask
    return best


def _stroke_width(size: int, low: float, high: float, rng: np.random.Generator) -> int:
    return max(1, round(rng.uniform(low, high) * size / 256))


def scratch_painter(colors: Sequence[RGB], strength: tuple[float, float] = (0.6, 0.9)) -> Painter:
    """A thin, slightly curved line: a tool mark or handling scratch."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        size = scene.size

        def make() -> np.ndarray:
            start = scene.anchor(rng)
            length = rng.uniform(0.18, 0.45) * size
            angle = rng.uniform(0, 2 * math.pi)
            end = (start[0] + length * math.cos(angle), start[1] + length * math.sin(angle))
            path = bezier_path(rng, start, end, bend=0.15)
            return polyline_mask(size, [path], _stroke_width(size, 1.6, 3.6, rng))

        mask = _retry(scene, rng, make)
        color = colors[int(rng.integers(len(colors)))]
        apply_change(scene, mask, color, float(rng.uniform(*strength)))
        return mask

    return paint


def crack_painter(darkness: tuple[float, float] = (0.15, 0.35)) -> Painter:
    """A dark, jagged, sometimes branching line: material that split."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        size = scene.size

        def make() -> np.ndarray:
            start = scene.anchor(rng)
            step = max(2.0, size / 64)
            trunk = random_walk(rng, start, rng.uniform(0, 2 * math.pi), rng.uniform(0.15, 0.35) * size, step)
            paths = [trunk]
            for _ in range(int(rng.integers(0, 3))):
                fork = trunk[int(rng.integers(1, len(trunk)))]
                paths.append(
                    random_walk(
                        rng, tuple(fork), rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.12) * size, step
                    )
                )
            return polyline_mask(size, paths, _stroke_width(size, 1.6, 3.0, rng))

        mask = _retry(scene, rng, make)
        factor = float(rng.uniform(*darkness))
        apply_change(scene, mask, scene.image * factor, 1.0)
        return mask

    return paint


def hole_painter(fill: RGB = (0.03, 0.03, 0.035), radius: tuple[float, float] = (0.025, 0.07)) -> Painter:
    """A punched-through or torn area: dark, with a shaded rim so it reads as depth."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        size = scene.size
        mask = _retry(
            scene,
            rng,
            lambda: polygon_mask(
                size, blob_polygon(rng, scene.anchor(rng), rng.uniform(*radius) * size, 0.2)
            ),
        )
        depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        shade = np.clip(depth / max(float(depth.max()), 1.0), 0.0, 1.0)[:, :, None]
        rim = scene.image * 0.45
        target = rim * (1 - shade) + np.asarray(fill, np.float32) * shade
        apply_change(scene, mask, target.astype(np.float32), 1.0)
        return mask

    return paint


def stain_painter(
    colors: Sequence[RGB], alpha: tuple[float, float] = (0.5, 0.8), radius: tuple[float, float] = (0.04, 0.11)
) -> Painter:
    """A translucent blob: oil, glue, dirt or residue lying on the surface."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        size = scene.size
        mask = _retry(
            scene,
            rng,
            lambda: polygon_mask(
                size, blob_polygon(rng, scene.anchor(rng), rng.uniform(*radius) * size, 0.3)
            ),
        )
        color = colors[int(rng.integers(len(colors)))]
        apply_change(scene, mask, color, float(rng.uniform(*alpha)))
        return mask

    return paint


def recolor_painter(tints: Sequence[RGB], radius: tuple[float, float] = (0.05, 0.12)) -> Painter:
    """A patch whose colour is wrong but whose texture is intact: dye, print or coating fault."""

    def paint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
        size = scene.size
        mask = _retry(
            scene,
            rng,
            lambda: polygon_mask(
                size, blob_polygon(rng, scene.anchor(rng), rng.uniform(*radius) * size, 0.3)
            ),
        )
        tint = np.asarray(tints[int(rng.integers(len(tints)))], np.float32)
        luminance = scene.image.mean(axis=2, keepdims=True)
        target = np.clip(luminance * tint * 1.6, 0.0, 1.0)
        apply_change(scene, mask, target, float(rng.uniform(0.75, 1.0)))
        return mask

    return paint
