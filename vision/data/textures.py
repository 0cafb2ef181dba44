"""Textured-surface products built on the real texture photos that ship inside scikit-image.

Real photos give the natural irregularity (grain, mortar, fibres) that procedural noise lacks; a random
crop, rotation and flip per part means no two good parts are the same surface patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vision.data.defects import (
    RGB,
    Painter,
    Scene,
    crack_painter,
    hole_painter,
    recolor_painter,
    scratch_painter,
    stain_painter,
)

TEXTURE_DEFECTS = ("scratch", "crack", "hole", "stain", "color")


@dataclass(frozen=True)
class TextureStyle:
    photo: str  # name of the skimage.data loader
    dark: RGB
    light: RGB
    free_rotation: bool  # isotropic textures may turn any angle; brick rows stay near-axis-aligned
    window: float  # share of the photo's side one frame shows
    stain_colors: tuple[RGB, ...]
    tints: tuple[RGB, ...]


@lru_cache(maxsize=8)
def _photo(name: str) -> np.ndarray:
    """The grayscale photo, normalised to [0, 1] on robust percentiles (loaded once: it costs ~100 ms)."""
    import skimage.data  # imported lazily: the procedural products do not need scikit-image

    gray = getattr(skimage.data, name)().astype(np.float32)
    low, high = np.percentile(gray, [1, 99])
    return np.clip((gray - low) / max(high - low, 1.0), 0.0, 1.0)


@lru_cache(maxsize=8)
def _tinted(style: TextureStyle) -> np.ndarray:
    gray = _photo(style.photo)[:, :, None]
    dark = np.asarray(style.dark, np.float32)
    light = np.asarray(style.light, np.float32)
    return np.ascontiguousarray(dark + (light - dark) * gray, dtype=np.float32)


class TextureProduct:
    """A flat textured material filling the frame (tiles, stone slabs, carpet)."""

    defect_types = TEXTURE_DEFECTS

    def __init__(self, name: str, style: TextureStyle) -> None:
        self.name = name
        self.style = style
        self._painters: dict[str, Painter] = {
            "scratch": scratch_painter([(0.92, 0.9, 0.85), (0.06, 0.06, 0.06)]),
            "crack": crack_painter(),
            "hole": hole_painter(),
            "stain": stain_painter(style.stain_colors),
            "color": recolor_painter(style.tints),
        }

    def render(self, rng: np.random.Generator, size: int) -> Scene:
        texture = _tinted(self.style)
        source = texture.shape[0]
        if self.style.free_rotation:
            angle = rng.uniform(0.0, 360.0)
        else:
            angle = 90.0 * int(rng.integers(4)) + rng.normal(0.0, 1.5)
        zoom = rng.uniform(0.92, 1.08)
        window = self.style.window * source / zoom
        theta = math.radians(angle)
        half_extent = 0.5 * window * (abs(math.cos(theta)) + abs(math.sin(theta)))
        low, high = half_extent, source - half_extent
        cx = rng.uniform(low, high) if high > low else source / 2
        cy = rng.uniform(low, high) if high > low else source / 2
        scale = size / window
        matrix = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        matrix[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
        image = cv2.warpAffine(
            texture, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        if rng.random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
        return Scene(image=image, surface=np.ones((size, size), bool))

    def add_defect(self, scene: Scene, defect_type: str, rng: np.random.Generator) -> np.ndarray:
        return self._painters[defect_type](scene, rng)


TILE = TextureStyle(
    photo="brick",
    dark=(0.22, 0.09, 0.05),
    light=(0.88, 0.58, 0.42),
    free_rotation=False,
    window=0.5,
    stain_colors=((0.1, 0.1, 0.12), (0.95, 0.95, 0.9), (0.35, 0.45, 0.2)),
    tints=((0.2, 0.5, 1.2), (0.3, 1.1, 0.5)),
)
STONE = TextureStyle(
    photo="gravel",
    dark=(0.1, 0.1, 0.11),
    light=(0.86, 0.83, 0.76),
    free_rotation=True,
    window=0.5,
    stain_colors=((0.55, 0.28, 0.05), (0.05, 0.05, 0.08), (0.15, 0.35, 0.7)),
    tints=((1.3, 0.4, 0.2), (0.2, 0.6, 1.3), (0.3, 1.2, 0.3)),
)
CARPET = TextureStyle(
    photo="grass",
    dark=(0.04, 0.07, 0.2),
    light=(0.55, 0.62, 0.88),
    free_rotation=True,
    window=0.5,
    stain_colors=((0.9, 0.85, 0.55), (0.45, 0.25, 0.08), (0.95, 0.95, 0.95)),
    tints=((1.4, 0.5, 0.2), (1.2, 1.1, 0.1)),
)
