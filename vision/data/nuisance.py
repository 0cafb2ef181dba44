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


# ------------------------------------------------------------------------------------------- hard suite


@dataclass(frozen=True)
class LineCamera:
    """The hard suite's camera: lighting drift plus what a real line adds (vignetting, focus, JPEG)."""

    lighting: Lighting
    vignette: float  # brightness lost in the corners, share
    defocus_sigma: float  # pixels at 256 px; 0 = sharp
    jpeg_quality: int


def sample_line_camera(rng: np.random.Generator) -> LineCamera:
    """Strengths a production line shows between parts: +-20 % gain, a 20 % light gradient, q70-95 JPEG."""
    red, green, blue = (float(v) for v in rng.uniform(0.95, 1.05, size=3))
    lighting = Lighting(
        gain=float(rng.uniform(0.8, 1.2)),
        channel_gain=(red, green, blue),
        gradient_strength=float(rng.uniform(0.0, 0.2)),
        gradient_angle=float(rng.uniform(0.0, 2 * math.pi)),
        noise_sigma=float(rng.uniform(0.004, 0.02)),
    )
    defocus = float(rng.uniform(0.3, 0.7)) if rng.random() < 0.4 else 0.0
    return LineCamera(
        lighting=lighting,
        vignette=float(rng.uniform(0.0, 0.1)),
        defocus_sigma=defocus,
        jpeg_quality=int(rng.integers(70, 96)),
    )


@lru_cache(maxsize=8)
def _corner_falloff(size: int) -> np.ndarray:
    xs, ys = _unit_grid(size)
    return np.asarray((xs**2 + ys**2) * 2.0, dtype=np.float32)  # 0 at the centre, 1 in the corners


def apply_line_camera(image: np.ndarray, camera: LineCamera, noise_rng: np.random.Generator) -> np.ndarray:
    """float32 HxWx3 scene in [0, 1] -> a JPEG-compressed, decoded uint8 RGB frame."""
    import cv2  # the legacy camera above needs no OpenCV

    size = image.shape[0]
    if image.shape[1] != size:
        raise ValueError(f"the line camera expects square frames, got {image.shape[:2]}")
    if camera.defocus_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), camera.defocus_sigma * size / 256)
    shaded = image * (1.0 - camera.vignette * _corner_falloff(size))[:, :, None]
    frame = apply_camera(shaded.astype(np.float32), camera.lighting, noise_rng)
    ok, encoded = cv2.imencode(
        ".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, camera.jpeg_quality]
    )
    if not ok:
        raise OSError("JPEG encoding failed")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if decoded is None:
        raise OSError("JPEG decoding failed")
    return np.ascontiguousarray(decoded[:, :, ::-1])
