"""Label-free stand-ins for defects: rectangles cut from other good images, flipped and re-tinted.

Healing on good images alone teaches the student to map everything onto normal features, which is exactly
what hides defects; pasted patches keep it faithful to the teacher off the normal manifold. The same
patches, with their masks, give a label-free AUROC that decides whether healing helped."""

from __future__ import annotations

import numpy as np

MAX_PATCHES = 3
MAX_TINT = 60


def paste_patches(
    images: np.ndarray, rng: np.random.Generator, min_share: float = 1 / 16, max_share: float = 1 / 4
) -> tuple[np.ndarray, np.ndarray]:
    """(images with 1-3 foreign patches each [N,H,W,3] uint8, masks of the pasted pixels [N,H,W] bool)."""
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"need uint8 images [N, H, W, 3], got shape {images.shape}")
    out = images.copy()
    masks = np.zeros(images.shape[:3], dtype=bool)
    height, width = images.shape[1:3]
    for index in range(len(images)):
        for _ in range(int(rng.integers(1, MAX_PATCHES + 1))):
            h = int(rng.integers(max(2, height * min_share), max(3, height * max_share)))
            w = int(rng.integers(max(2, width * min_share), max(3, width * max_share)))
            source = images[int(rng.integers(len(images)))]
            sy, sx = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            patch = source[sy : sy + h, sx : sx + w]
            if rng.random() < 0.5:
                patch = patch[::-1]
            if rng.random() < 0.5:
                tint = rng.integers(-MAX_TINT, MAX_TINT + 1, size=3)
                patch = np.clip(patch.astype(np.int16) + tint, 0, 255).astype(np.uint8)
            out[index, y : y + h, x : x + w] = patch
            masks[index, y : y + h, x : x + w] = True
    return out, masks
