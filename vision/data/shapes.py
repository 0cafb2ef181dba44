"""Rasterised shapes shared by part templates and defect painters.

Masks are drawn without anti-aliasing on purpose: a defect changes exactly the pixels of its mask, so the
ground truth is exact rather than a blurred guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

Point = tuple[float, float]


def blob_polygon(
    rng: np.random.Generator, center: Point, radius: float, roughness: float = 0.25, vertices: int = 24
) -> np.ndarray:
    """An irregular closed outline (stains, holes, chips) so no two defects share a shape."""
    angles = np.linspace(0.0, 2 * math.pi, vertices, endpoint=False) + rng.uniform(0, 2 * math.pi / vertices)
    harmonics = np.arange(1, 5)
    amplitudes = rng.normal(0.0, roughness / harmonics)
    phases = rng.uniform(0, 2 * math.pi, size=harmonics.size)
    wobble = (amplitudes[:, None] * np.cos(harmonics[:, None] * angles[None, :] + phases[:, None])).sum(0)
    radii = radius * np.clip(1.0 + wobble, 0.45, 1.6)
    stretch = rng.uniform(0.6, 1.0)
    tilt = rng.uniform(0, math.pi)
    x = radii * np.cos(angles)
    y = radii * np.sin(angles) * stretch
    xr = x * math.cos(tilt) - y * math.sin(tilt) + center[0]
    yr = x * math.sin(tilt) + y * math.cos(tilt) + center[1]
    return np.stack([xr, yr], axis=1)


def bezier_path(
    rng: np.random.Generator, start: Point, end: Point, bend: float, steps: int = 24
) -> np.ndarray:
    """A gently curved stroke between two points (scratches are rarely perfectly straight)."""
    p0, p2 = np.asarray(start, float), np.asarray(end, float)
    mid = (p0 + p2) / 2
    direction = p2 - p0
    normal = np.array([-direction[1], direction[0]])
    p1 = mid + normal * rng.uniform(-bend, bend)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def random_walk(
    rng: np.random.Generator, start: Point, angle: float, length: float, step: float, wiggle: float = 0.35
) -> np.ndarray:
    """A jagged path for cracks: direction drifts at every step."""
    steps = max(2, int(length / step))
    turns = angle + np.cumsum(rng.normal(0.0, wiggle, size=steps))
    moves = np.stack([np.cos(turns), np.sin(turns)], axis=1) * step
    return np.vstack([np.asarray(start, float), np.asarray(start, float) + np.cumsum(moves, axis=0)])


def _to_int(points: np.ndarray) -> np.ndarray:
    return np.round(points).astype(np.int32).reshape(-1, 1, 2)


def polygon_mask(size: int, points: np.ndarray) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [_to_int(points)], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def polyline_mask(size: int, paths: Sequence[np.ndarray], thickness: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.polylines(canvas, [_to_int(p) for p in paths], False, 1, thickness=thickness, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def rotation_matrix(size: int, angle_deg: float, scale: float, shift: Point) -> np.ndarray:
    """Pose of a part on the belt: rotation/scale about the frame centre, then a shift in pixels."""
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    matrix[:, 2] += shift
    return matrix


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, float)
    return points @ matrix[:, :2].T + matrix[:, 2]
