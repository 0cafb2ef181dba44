"""Camera-side variation every part goes through: lighting gain, a light gradient, colour cast, sensor noise.

This is why pixel differencing against a golden template cannot win: two good parts never match pixel for
pixel, so a detector has to learn what "normal" looks like, not what one image looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Lighting:
    gain: float
    channel_gain: tuple[float, float, float]
    gradient_strength: float
    gradient_angle: float
    noise_sigma: float


def sample_lighting(rng: np.random.Generator) -> Lighting:
    red, green, blue = (float(v) for v in rng.uniform(0.96, 1.04, size=3))
    return Lighting(
        gain=float(rng.uniform(0.85, 1.15)),
        channel_gain=(red, green, blue),
        gradient_strength=float(rng.uniform(0.0, 0.25)),
        gradient_angle=float(rng.uniform(0.0, 2 * math.pi)),
        noise_sigma=float(rng.uniform(0.006, 0.02)),
    )


@lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(size, dtype=np.float32) / max(size - 1, 1)) - 0.5
    return axis[None, :], axis[:, None]


def apply_camera(image: np.ndarray, lighting: Lighting, noise_rng: np.random.Generator) -> np.ndarray:
    """float32 HxWx3 scene in [0, 1] -> the uint8 RGB frame a camera would deliver."""
    size_y, size_x = image.shape[:2]
    xs, ys = _unit_grid(size_x) if size_x == size_y else (_unit_grid(size_x)[0], _unit_grid(size_y)[1])
    field = 1.0 + lighting.gradient_strength * (
        xs * math.cos(lighting.gradient_angle) + ys * math.sin(lighting.gradient_angle)
    )
    gains = np.asarray(lighting.channel_gain, np.float32) * np.float32(lighting.gain)
    out = image * field[:, :, None].astype(np.float32) * gains
    noise = noise_rng.standard_normal(image.shape, dtype=np.float32)
    out += noise * np.float32(lighting.noise_sigma)
    np.clip(out, 0.0, 1.0, out=out)
    return (out * 255.0 + 0.5).astype(np.uint8)
