"""Surfaces of the hard suite: crops of real photos that ship inside scikit-image, and procedural materials.

Only image files bundled in the installed scikit-image wheel are read, straight from the package folder
(never through `skimage.data`'s loaders, which may fetch missing files over the network): the suite is
generated offline and byte-for-byte the same on every machine with the same packages. Each frame is a
random crop of its source (position, angle, a little zoom), so no two good parts show the same patch and a
frame is never aligned to the pixel grid the way a template would be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

RGB = tuple[float, float, float]
Rotation = Literal["free", "aligned"]

PROCEDURAL_SIZE = 1024  # side of a generated procedural source, in pixels
# Aligned surfaces (brick rows, weave, wood grain) sit within this many degrees of their nominal angle.
ALIGNED_MAX_DEGREES = 2.5


@dataclass(frozen=True)
class Surface:
    """Where a surface's pixels come from and how a frame is cut out of them."""

    name: str
    source: str  # "photo:<file bundled in skimage/data>" or "procedural:<weave|wood>"
    rotation: Rotation = "free"
    window: float = 0.5  # side of one frame as a share of the region's shorter side
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1 as shares of the source
    tint: tuple[RGB, RGB] | None = None  # grey sources are mapped dark -> light; None keeps the colours


def bundled_photo_path(filename: str) -> Path:
    """The path of an image file that ships inside the installed scikit-image package."""
    spec = find_spec("skimage")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-image is not installed; the hard suite reads photos bundled with it")
    path = Path(spec.origin).parent / "data" / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{filename} is not bundled with the installed scikit-image ({path} missing); the hard suite "
            "only uses files shipped inside the package and never downloads"
        )
    return path


def _read_photo(filename: str) -> np.ndarray:
    path = bundled_photo_path(filename)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"could not decode bundled photo {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise: the irregularity a real material has."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return np.asarray((noise - noise.mean()) / max(float(noise.std()), 1e-6), dtype=np.float32)


def _streaks(rng: np.random.Generator, size: int, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Noise stretched along one axis: fibres in a yarn, grain in wood."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    streaks = cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)
    return streaks / max(float(streaks.std()), 1e-6)


def _weave(size: int) -> np.ndarray:
    """Plain-woven fabric: over/under yarns with uneven thickness, brightness, slubs and fibre grain."""
    rng = np.random.default_rng(21)
    period = 14.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u = xs + 1.6 * _smooth_noise(rng, (size, size), 18.0)
    v = ys + 1.6 * _smooth_noise(rng, (size, size), 18.0)
    column, row = np.floor(u / period).astype(np.int64), np.floor(v / period).astype(np.int64)
    fu, fv = (u / period) % 1.0, (v / period) % 1.0
    count = size // int(period) + 4
    warp_gain = rng.uniform(0.85, 1.12, count + 2)[np.clip(column, 0, count + 1)]
    weft_gain = rng.uniform(0.85, 1.12, count + 2)[np.clip(row, 0, count + 1)]
    warp = np.sin(np.pi * fu) ** 0.7 * (0.55 + 0.45 * np.sin(np.pi * fv)) * warp_gain
    weft = np.sin(np.pi * fv) ** 0.7 * (0.55 + 0.45 * np.sin(np.pi * fu)) * weft_gain
    on_top = (column + row) % 2 == 0
    value = np.where(on_top, warp, weft)
    fibres_v = _streaks(rng, size, 0.6, 3.0)
    fibres_h = _streaks(rng, size, 3.0, 0.6)
    value = value + 0.25 * np.where(on_top, fibres_v, fibres_h) + 0.05 * _smooth_noise(rng, (size, size), 40)
    return np.asarray(value, dtype=np.float32)


def _wood(size: int) -> np.ndarray:
    """Flat-sawn wood: growth rings bent by slow noise, varying ring width, pores along the grain."""
    rng = np.random.default_rng(33)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    bend = 9.0 * _smooth_noise(rng, (size, size), 70.0) + 1.5 * _smooth_noise(rng, (size, size), 10.0)
    phase = (ys + bend + 0.00004 * (xs - size / 2) ** 2) / 17.0
    phase = phase + 0.35 * np.sin(phase * 0.37)  # rings of uneven width
    ring = 0.5 + 0.5 * np.sin(2 * math.pi * phase)
    ring = ring**2.2  # sharp dark latewood, wide pale earlywood
    pores = cv2.GaussianBlur(
        (rng.random((size, size)) < 0.015).astype(np.float32), (0, 0), sigmaX=4.0, sigmaY=0.6
    )
    grain = _streaks(rng, size, 6.0, 0.7)
    value = 1.0 - 0.55 * ring - 1.5 * pores + 0.06 * grain + 0.05 * _smooth_noise(rng, (size, size), 80)
    return np.asarray(value, dtype=np.float32)


_PROCEDURAL = {"weave": _weave, "wood": _wood}


@lru_cache(maxsize=32)
def source_image(surface: Surface) -> np.ndarray:
    """The whole source of a surface as float32 HxWx3 in [0, 1] (cached: decoding costs tens of ms)."""
    kind, _, name = surface.source.partition(":")
    if kind == "photo":
        rgb = _read_photo(name)
    elif kind == "procedural" and name in _PROCEDURAL:
        gray = _PROCEDURAL[name](PROCEDURAL_SIZE)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        raise ValueError(f"unknown surface source {surface.source!r} for {surface.name!r}")
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = surface.region
    inside = rgb[int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)]
    low, high = np.percentile(inside, [1, 99])  # over all channels: colours keep their balance
    scaled = np.clip((rgb - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    if surface.tint is not None:
        dark, light = (np.asarray(c, np.float32) for c in surface.tint)
        scaled = dark + (light - dark) * scaled.mean(axis=2, keepdims=True)
    return np.ascontiguousarray(scaled, dtype=np.float32)


def render_view(surface: Surface, rng: np.random.Generator, size: int, zoom: float = 1.0) -> np.ndarray:
    """A `size` x `size` float32 frame cut from the surface's region; `zoom` > 1 magnifies the grain."""
    image = source_image(surface)
    height, width = image.shape[:2]
    x0, y0, x1, y1 = surface.region
    left, top, right, bottom = x0 * width, y0 * height, x1 * width, y1 * height
    window = surface.window * min(right - left, bottom - top) / (zoom * rng.uniform(0.94, 1.06))
    if surface.rotation == "free":
        angle = float(rng.uniform(0.0, 360.0))
    else:
        angle = float(np.clip(rng.normal(0.0, 1.0), -ALIGNED_MAX_DEGREES, ALIGNED_MAX_DEGREES))
    theta = math.radians(angle)
    half = 0.5 * window * (abs(math.cos(theta)) + abs(math.sin(theta)))
    cx = rng.uniform(left + half, right - half) if right - left > 2 * half else (left + right) / 2
    cy = rng.uniform(top + half, bottom - half) if bottom - top > 2 * half else (top + bottom) / 2
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, size / window)
    matrix[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
    view = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    if surface.rotation == "free" and rng.random() < 0.5:
        view = view[:, ::-1]
    return np.ascontiguousarray(view, dtype=np.float32)
