"""Procedural products: a printed circuit board and a machined metal bracket lying on a conveyor belt.

Each product is one fixed design (a line makes the same part all day), rendered once per image size at 2x
and cached; a part on the line is that template placed with a small random shift and rotation, which is
cheap (one warp) and realistic (parts never sit at exactly the same spot).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vision.data.defects import (
    MIN_AREA_FRACTION,
    Painter,
    Scene,
    crack_painter,
    scratch_painter,
    stain_painter,
)
from vision.data.shapes import blob_polygon, polygon_mask, rotation_matrix, transform_points

SUPERSAMPLE = 2
PCB_DEFECTS = ("missing_component", "scratch", "contamination", "burn")
BRACKET_DEFECTS = ("scratch", "crack", "chip", "rust")


@dataclass(frozen=True)
class PartTemplate:
    """A part rendered once: premultiplied RGBA (so warping leaves no fringes) and what defects need."""

    rgba: np.ndarray  # float32 HxWx4, colour premultiplied by alpha
    bare_rgba: np.ndarray | None  # the same board with no components (PCB only)
    footprints: tuple[np.ndarray, ...]  # component outlines in template pixels
    outline: np.ndarray  # points on the part's outer edge, template pixels
    background: np.ndarray  # float32 HxWx3 conveyor belt


@lru_cache(maxsize=8)
def _belt(size: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (size, size)).astype(np.float32), (0, 0), 0.8)
    stripes = 0.012 * np.sin(np.arange(size, dtype=np.float32) * (2 * math.pi / max(size / 24, 2)))[:, None]
    gray = 0.17 + 0.02 * grain + stripes
    return np.repeat(gray[:, :, None], 3, axis=2) * np.array([1.0, 1.0, 1.06], np.float32)


def _finish(rgb: np.ndarray, alpha: np.ndarray, size: int) -> np.ndarray:
    """Downsample a 2x drawing to the template size; premultiply so the warp blends edges correctly."""
    rgba = np.dstack([rgb * alpha[:, :, None], alpha]).astype(np.float32)
    return cv2.resize(rgba, (size, size), interpolation=cv2.INTER_AREA)


def _outer_outline(alpha: np.ndarray, size: int) -> np.ndarray:
    small = cv2.resize(alpha, (size, size), interpolation=cv2.INTER_AREA)
    contours, _ = cv2.findContours((small > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=len).reshape(-1, 2).astype(np.float64)


# ---------------------------------------------------------------------------------------------------- PCB

_GOLD = (0.82, 0.68, 0.35)
_SILK = (0.92, 0.92, 0.88)
_MASK_GREEN = (0.07, 0.32, 0.16)
_TRACE_GREEN = (0.13, 0.46, 0.22)

# (kind, centre x, centre y, width, height) in board units; one fixed design.
_PCB_COMPONENTS: tuple[tuple[str, float, float, float, float], ...] = (
    ("ic", 0.32, 0.33, 0.22, 0.15),
    ("ic", 0.70, 0.62, 0.15, 0.15),
    ("connector", 0.50, 0.85, 0.46, 0.08),
    ("electrolytic", 0.76, 0.24, 0.13, 0.13),
    ("electrolytic", 0.20, 0.66, 0.11, 0.11),
    ("resistor", 0.56, 0.21, 0.08, 0.035),
    ("resistor", 0.56, 0.29, 0.08, 0.035),
    ("resistor", 0.56, 0.37, 0.08, 0.035),
    ("resistor", 0.38, 0.62, 0.035, 0.08),
    ("resistor", 0.45, 0.62, 0.035, 0.08),
    ("capacitor", 0.88, 0.45, 0.06, 0.03),
    ("capacitor", 0.88, 0.52, 0.06, 0.03),
    ("crystal", 0.16, 0.45, 0.09, 0.045),
)


def _rect(canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: object) -> None:
    cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), color, -1)


def _draw_pads_and_silk(rgb: np.ndarray, s: float) -> None:
    for kind, cx, cy, w, h in _PCB_COMPONENTS:
        x0, y0, x1, y1 = (cx - w / 2) * s, (cy - h / 2) * s, (cx + w / 2) * s, (cy + h / 2) * s
        margin = 0.012 * s
        cv2.rectangle(
            rgb,
            (int(x0 - margin), int(y0 - margin)),
            (int(x1 + margin), int(y1 + margin)),
            _SILK,
            max(1, int(0.004 * s)),
        )
        if kind == "ic":
            pins = max(4, int(w / 0.025))
            for i in range(pins):
                px = x0 + (i + 0.5) * (x1 - x0) / pins
                _rect(rgb, px - 0.006 * s, y0 - 0.01 * s, px + 0.006 * s, y0 + 0.01 * s, _GOLD)
                _rect(rgb, px - 0.006 * s, y1 - 0.01 * s, px + 0.006 * s, y1 + 0.01 * s, _GOLD)
        elif kind == "connector":
            for i in range(8):
                px = x0 + (i + 0.5) * (x1 - x0) / 8
                cv2.circle(rgb, (int(px), int(cy * s)), int(0.013 * s), _GOLD, -1)
                cv2.circle(rgb, (int(px), int(cy * s)), int(0.005 * s), (0.05, 0.05, 0.05), -1)
        elif w >= h:
            _rect(rgb, x0, y0, x0 + 0.3 * (x1 - x0), y1, _GOLD)
            _rect(rgb, x1 - 0.3 * (x1 - x0), y0, x1, y1, _GOLD)
        else:
            _rect(rgb, x0, y0, x1, y0 + 0.3 * (y1 - y0), _GOLD)
            _rect(rgb, x0, y1 - 0.3 * (y1 - y0), x1, y1, _GOLD)
    # Silkscreen "labels": short dash groups the eye reads as text.
    rng = np.random.default_rng(11)
    for _ in range(10):
        x, y = rng.uniform(0.12, 0.85) * s, rng.uniform(0.1, 0.92) * s
        for k in range(int(rng.integers(2, 5))):
            _rect(rgb, x + k * 0.014 * s, y, x + k * 0.014 * s + 0.009 * s, y + 0.012 * s, _SILK)


def _draw_traces(rgb: np.ndarray, s: float) -> None:
    rng = np.random.default_rng(5)
    width = max(1, int(0.008 * s))
    anchors = [(cx, cy) for _, cx, cy, _, _ in _PCB_COMPONENTS]
    for _ in range(26):
        (ax, ay), (bx, by) = (anchors[i] for i in rng.choice(len(anchors), 2, replace=False))
        ax, ay = ax + rng.uniform(-0.05, 0.05), ay + rng.uniform(-0.05, 0.05)
        bx, by = bx + rng.uniform(-0.05, 0.05), by + rng.uniform(-0.05, 0.05)
        corner = (bx, ay) if rng.random() < 0.5 else (ax, by)
        points = np.array([(ax, ay), corner, (bx, by)]) * s
        cv2.polylines(rgb, [points.astype(np.int32).reshape(-1, 1, 2)], False, _TRACE_GREEN, width)
        for vx, vy in ((ax, ay), (bx, by)):
            cv2.circle(rgb, (int(vx * s), int(vy * s)), int(0.009 * s), _GOLD, -1)
            cv2.circle(rgb, (int(vx * s), int(vy * s)), max(1, int(0.0035 * s)), (0.1, 0.1, 0.1), -1)
    for i in range(6):  # a parallel bus along the left edge
        x = (0.1 + i * 0.014) * s
        cv2.line(rgb, (int(x), int(0.2 * s)), (int(x), int(0.55 * s)), _TRACE_GREEN, width)


def _draw_component(rgb: np.ndarray, kind: str, cx: float, cy: float, w: float, h: float, s: float) -> None:
    x0, y0, x1, y1 = (cx - w / 2) * s, (cy - h / 2) * s, (cx + w / 2) * s, (cy + h / 2) * s
    if kind == "ic":
        pins = max(4, int(w / 0.025))
        for i in range(pins):
            px = x0 + (i + 0.5) * (x1 - x0) / pins
            _rect(rgb, px - 0.005 * s, y0, px + 0.005 * s, y1, (0.76, 0.76, 0.79))
        _rect(rgb, x0, y0 + 0.012 * s, x1, y1 - 0.012 * s, (0.08, 0.08, 0.09))
        cv2.circle(
            rgb, (int(x0 + 0.02 * s), int(y0 + 0.03 * s)), max(1, int(0.007 * s)), (0.35, 0.35, 0.36), -1
        )
    elif kind == "electrolytic":
        centre, radius = (int(cx * s), int(cy * s)), int(w / 2 * s)
        cv2.circle(rgb, centre, radius, (0.78, 0.78, 0.82), -1)
        cv2.ellipse(rgb, centre, (radius, radius), 0, 200, 340, (0.12, 0.12, 0.2), -1)
        cv2.circle(rgb, centre, int(radius * 0.55), (0.62, 0.62, 0.66), max(1, int(0.004 * s)))
    elif kind == "connector":
        _rect(rgb, x0, y0, x1, y1, (0.9, 0.88, 0.8))
        for i in range(8):
            px = x0 + (i + 0.5) * (x1 - x0) / 8
            _rect(rgb, px - 0.01 * s, cy * s - 0.01 * s, px + 0.01 * s, cy * s + 0.01 * s, (0.2, 0.2, 0.2))
    elif kind == "crystal":
        _rect(rgb, x0, y0, x1, y1, (0.8, 0.8, 0.83))
        _rect(rgb, x0 + 0.01 * s, y0 + 0.01 * s, x1 - 0.01 * s, y1 - 0.01 * s, (0.7, 0.7, 0.73))
    else:  # resistor (black body) or ceramic capacitor (tan body), both with metal end caps
        body = (0.1, 0.1, 0.1) if kind == "resistor" else (0.74, 0.6, 0.4)
        _rect(rgb, x0, y0, x1, y1, (0.8, 0.8, 0.82))
        if w >= h:
            _rect(rgb, x0 + 0.25 * (x1 - x0), y0, x1 - 0.25 * (x1 - x0), y1, body)
        else:
            _rect(rgb, x0, y0 + 0.25 * (y1 - y0), x1, y1 - 0.25 * (y1 - y0), body)


def _footprint(kind: str, cx: float, cy: float, w: float, h: float, size: int) -> np.ndarray:
    if kind == "electrolytic":
        angles = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        return np.stack([cx + w / 2 * np.cos(angles), cy + h / 2 * np.sin(angles)], axis=1) * size
    corners = [
        (cx - w / 2, cy - h / 2),
        (cx + w / 2, cy - h / 2),
        (cx + w / 2, cy + h / 2),
        (cx - w / 2, cy + h / 2),
    ]
    return np.array(corners) * size


@lru_cache(maxsize=8)
def pcb_template(size: int) -> PartTemplate:
    s = float(size * SUPERSAMPLE)
    side = int(s)
    rng = np.random.default_rng(3)
    mottling = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), 3.0)
    rgb = np.empty((side, side, 3), np.float32)
    rgb[:] = _MASK_GREEN
    rgb += 0.012 * mottling[:, :, None]
    alpha = np.zeros((side, side), np.float32)
    _rect(alpha, 0.06 * s, 0.06 * s, 0.94 * s, 0.94 * s, 1.0)
    _draw_traces(rgb, s)
    _draw_pads_and_silk(rgb, s)
    for hx in (0.1, 0.9):  # mounting holes: a gold ring with the belt showing through
        for hy in (0.1, 0.9):
            cv2.circle(rgb, (int(hx * s), int(hy * s)), int(0.03 * s), _GOLD, -1)
            cv2.circle(alpha, (int(hx * s), int(hy * s)), int(0.018 * s), 0.0, -1)
    bare = rgb.copy()
    for kind, cx, cy, w, h in _PCB_COMPONENTS:
        _draw_component(rgb, kind, cx, cy, w, h, s)
    return PartTemplate(
        rgba=_finish(rgb, alpha, size),
        bare_rgba=_finish(bare, alpha, size),
        footprints=tuple(_footprint(k, cx, cy, w, h, size) for k, cx, cy, w, h in _PCB_COMPONENTS),
        outline=_outer_outline(alpha, size),
        background=_belt(size),
    )


# ------------------------------------------------------------------------------------------------ bracket


def _capsule(
    canvas: np.ndarray, a: tuple[float, float], b: tuple[float, float], radius: float, value: float
) -> None:
    cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), value, int(2 * radius))
    cv2.circle(canvas, (int(a[0]), int(a[1])), int(radius), value, -1)
    cv2.circle(canvas, (int(b[0]), int(b[1])), int(radius), value, -1)


@lru_cache(maxsize=8)
def bracket_template(size: int) -> PartTemplate:
    s = float(size * SUPERSAMPLE)
    side = int(s)
    alpha = np.zeros((side, side), np.float32)
    half_w, half_h, corner = 0.36 * s, 0.26 * s, 0.07 * s
    c = s / 2
    _rect(alpha, c - half_w + corner, c - half_h, c + half_w - corner, c + half_h, 1.0)
    _rect(alpha, c - half_w, c - half_h + corner, c + half_w, c + half_h - corner, 1.0)
    for sx in (-1, 1):
        for sy in (-1, 1):
            cv2.circle(
                alpha,
                (int(c + sx * (half_w - corner)), int(c + sy * (half_h - corner))),
                int(corner),
                1.0,
                -1,
            )
    holes = [(c + sx * 0.27 * s, c + sy * 0.17 * s) for sx in (-1, 1) for sy in (-1, 1)]
    for hx, hy in holes:
        cv2.circle(alpha, (int(hx), int(hy)), int(0.045 * s), 0.0, -1)
    _capsule(alpha, (c - 0.1 * s, c), (c + 0.1 * s, c), 0.035 * s, 0.0)

    rng = np.random.default_rng(9)
    brushed = cv2.blur(rng.normal(0, 1, (side, side)).astype(np.float32), (61, 1))
    xs = np.linspace(-1, 1, side, dtype=np.float32)
    sheen = 0.07 * (xs[None, :] + xs[:, None])
    soft = cv2.GaussianBlur(alpha, (0, 0), 0.006 * s)
    bevel = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)
    shade = 0.62 + 0.05 * brushed / max(float(np.abs(brushed).max()), 1e-6) + sheen + 0.9 * bevel
    rgb = np.clip(shade[:, :, None] * np.array([1.0, 1.01, 1.05], np.float32), 0.05, 0.98)
    for hx, hy in holes:  # countersink ring
        cv2.circle(rgb, (int(hx), int(hy)), int(0.058 * s), (0.42, 0.43, 0.46), max(1, int(0.01 * s)))
    rgb = rgb.astype(np.float32)
    return PartTemplate(
        rgba=_finish(rgb, alpha, size),
        bare_rgba=None,
        footprints=(),
        outline=_outer_outline(alpha, size),
        background=_belt(size),
    )


# ------------------------------------------------------------------------------------------------ product


def _composite(rgba: np.ndarray, matrix: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = background.shape[0]
    warped = cv2.warpAffine(rgba, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    alpha = warped[:, :, 3:4]
    return background * (1.0 - alpha) + warped[:, :, :3], alpha[:, :, 0]


def _replace_where_different(scene: Scene, region: np.ndarray, replacement: np.ndarray) -> np.ndarray:
    """Swap in `replacement` inside `region`; the mask is the pixels that really changed."""
    changed = region & (np.abs(replacement - scene.image).max(axis=2) > 1.0 / 255)
    scene.image[changed] = replacement[changed]
    return changed


class PartProduct:
    """A discrete part on a belt; defects land on the part, never on the belt."""

    def __init__(
        self, name: str, template: Callable[[int], PartTemplate], painters: dict[str, Painter]
    ) -> None:
        self.name = name
        self._template = template
        self._painters = painters
        self.defect_types = tuple(painters)

    def render(self, rng: np.random.Generator, size: int) -> Scene:
        template = self._template(size)
        angle = float(np.clip(rng.normal(0.0, 1.5), -4.0, 4.0))
        shift = rng.uniform(-0.03, 0.03, size=2) * size
        matrix = rotation_matrix(
            size, angle, float(rng.uniform(0.98, 1.02)), (float(shift[0]), float(shift[1]))
        )
        image, alpha = _composite(template.rgba, matrix, template.background)
        return Scene(
            image=image.astype(np.float32),
            surface=alpha > 0.5,
            extras={"matrix": matrix, "template": template},
        )

    def add_defect(self, scene: Scene, defect_type: str, rng: np.random.Generator) -> np.ndarray:
        return self._painters[defect_type](scene, rng)


def missing_component(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A component not placed: its pads and the bare board show where it should be."""
    template: PartTemplate = scene.extras["template"]  # type: ignore[assignment]
    assert template.bare_rgba is not None
    matrix = scene.extras["matrix"]
    bare, _ = _composite(template.bare_rgba, matrix, template.background)  # type: ignore[arg-type]
    footprint = template.footprints[int(rng.integers(len(template.footprints)))]
    region = polygon_mask(scene.size, transform_points(matrix, footprint))  # type: ignore[arg-type]
    region = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    return _replace_where_different(scene, region, bare.astype(np.float32))


def chip(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A piece broken off the part's edge: the belt shows through."""
    template: PartTemplate = scene.extras["template"]  # type: ignore[assignment]
    outline = transform_points(scene.extras["matrix"], template.outline)  # type: ignore[arg-type]
    minimum = MIN_AREA_FRACTION * scene.size * scene.size
    region = np.zeros_like(scene.surface)
    for _ in range(12):
        centre = outline[int(rng.integers(len(outline)))]
        blob = blob_polygon(rng, (float(centre[0]), float(centre[1])), rng.uniform(0.045, 0.085) * scene.size)
        region = polygon_mask(scene.size, blob)
        if (region & scene.surface).sum() >= minimum:
            break
    return _replace_where_different(scene, region, template.background)


PCB_PAINTERS: dict[str, Painter] = {
    "missing_component": missing_component,
    "scratch": scratch_painter([(0.85, 0.5, 0.25), (0.85, 0.88, 0.82)]),
    "contamination": stain_painter([(0.82, 0.72, 0.3), (0.45, 0.42, 0.38), (0.93, 0.93, 0.9)]),
    "burn": stain_painter([(0.1, 0.06, 0.03), (0.2, 0.1, 0.04)], alpha=(0.75, 0.95), radius=(0.03, 0.08)),
}
BRACKET_PAINTERS: dict[str, Painter] = {
    "scratch": scratch_painter([(0.97, 0.97, 0.97), (0.22, 0.22, 0.24)]),
    "crack": crack_painter(darkness=(0.1, 0.25)),
    "chip": chip,
    "rust": stain_painter([(0.55, 0.25, 0.08), (0.45, 0.18, 0.05), (0.62, 0.35, 0.12)], alpha=(0.6, 0.9)),
}
