"""Tiny synthetic good parts for model-building tests: an aligned part (a fixture holds it, so the
Gaussian head fits) and crops of a texture (every position sees everything, so the memory bank fits)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def aligned_parts(count: int, seed: int = 0, size: int = 64) -> np.ndarray:
    """The same part at the same place in every frame, with sensor noise: [count, size, size, 3] RGB."""
    rng = np.random.default_rng(seed)
    part = np.full((size, size, 3), 40, np.uint8)
    cv2.rectangle(part, (10, 14), (54, 50), (200, 180, 60), -1)
    cv2.circle(part, (32, 32), 9, (30, 30, 220), -1)
    cv2.line(part, (0, 58), (63, 58), (255, 255, 255), 2)
    noise = rng.normal(0, 4, (count, size, size, 3))
    return np.clip(part[None] + noise, 0, 255).astype(np.uint8)


def texture_crops(count: int, seed: int = 0, size: int = 64) -> np.ndarray:
    """Crops at random places of one large random texture."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.integers(0, 256, (512, 512, 3)).astype(np.uint8), (0, 0), 2)
    corners = rng.integers(0, 512 - size, (count, 2))
    return np.stack([big[y : y + size, x : x + size] for y, x in corners])


def write_good_images(images: np.ndarray, data_root: Path, category: str) -> Path:
    """Write RGB images as `<data_root>/<category>/train/good/NNN.png` (the capture's layout)."""
    folder = data_root / category / "train" / "good"
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        cv2.imwrite(str(folder / f"{index:04d}.png"), np.ascontiguousarray(image[:, :, ::-1]))
    return folder
