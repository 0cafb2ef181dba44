"""Synthetic defects drawn on good images: a label-free stand-in for the defects a line has not shown yet.

Used where a build must compare two heads without any labelled defect (`vision.head_choice`, near the
alignment boundary): each head scores the held-back good images and defective copies of them, and the
head that separates them better is kept. Three kinds, one copy each, so no single shape decides: a patch
cut from another good image and pasted elsewhere (a foreign structure), a soft blob of brighter or darker
material (a stain, a dent's shading), and a thin dark or bright scratch. Numpy and OpenCV only: the station
builds with them too. On the real DEV and HOLDOUT sets and the synthetic textures, the head with the
better figure here had the better real image AUROC on 10 of 11 and on all four near the alignment
boundary; it was wrong on multicrystalline ELPV cells (0.893 vs 0.912, real 0.896 vs 0.872), far from the
boundary, where the ratio decides (benchmarks/real/head_choice.md).
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("cut-paste", "blob", "scratch")


def synthetic_defects(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Defective copies [3N, H, W, 3] of good uint8 images [N, H, W, 3] (N >= 2): for image i, rows
    3i, 3i+1, 3i+2 are its cut-paste, blob and scratch copies. The same images and seed give the same
    copies."""
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"synthetic defects need at least 2 images [N, H, W, 3], got shape {images.shape}")
    rng = np.random.default_rng(seed)
    copies = []
    for index, image in enumerate(images):
        donor = images[(index + 1 + rng.integers(len(images) - 1)) % len(images)]
        copies += [_cut_paste(image, donor, rng), _blob(image, rng), _scratch(image, rng)]
    return np.stack(copies)


def _cut_paste(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    side = max(2, int(rng.uniform(0.06, 0.15) * min(height, width)))
    sy, sx, ty, tx = (int(v) for v in rng.integers(0, min(height, width) - side, 4))
    out = image.copy()
    out[ty : ty + side, tx : tx + side] = donor[sy : sy + side, sx : sx + side]
    return out


def _blob(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.float32)
    cy, cx = (int(v) for v in rng.integers(height // 8, 7 * height // 8, 2))
    axes = tuple(int(v) for v in rng.integers(3, max(4, height // 12), 2))
    cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)[..., None]
    shift = float(rng.choice([-1.0, 1.0]) * rng.uniform(40, 80))
    return np.clip(image.astype(np.float32) + mask * shift, 0, 255).astype(np.uint8)


def _scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height = image.shape[0]
    y0, x0, y1, x1 = (int(v) for v in rng.integers(height // 8, 7 * height // 8, 4))
    tone = int(rng.choice([20, 230]))
    out = image.copy()
    cv2.line(out, (x0, y0), (x1, y1), (tone, tone, tone), int(rng.integers(1, 3)))
    return out
