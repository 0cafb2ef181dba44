"""The good images a model is built from, and their identity: shared by the plant's build (torch) and the
station's (ONNX Runtime alone), so both hold back the same images and record the same data hash."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vision.inspector import resize_to_input, validate_frame


def prepare_images(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Validate RGB uint8 images and stack them resized to [N, size, size, 3]."""
    if len(images) == 0:
        raise ValueError("no images given")
    prepared = []
    for index, image in enumerate(images):
        try:
            validate_frame(image)
        except ValueError as exc:
            raise ValueError(f"image {index}: {exc}") from exc
        prepared.append(resize_to_input(image, size))
    return np.stack(prepared)


def images_sha256(images: np.ndarray) -> str:
    """Identity of in-memory training data (shape and pixels)."""
    digest = hashlib.sha256(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def split_holdout(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, calibration); at least one image on each side."""
    if count < 2:
        raise ValueError(f"need at least 2 good images to fit and calibrate, got {count}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(count)
    held = min(count - 1, max(1, round(count * fraction)))
    return np.sort(order[held:]), np.sort(order[:held])


def dataset_sha256(paths: Sequence[Path], root: Path) -> str:
    """Identity of training files: their relative names and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class GoodImages(NamedTuple):
    images: list[np.ndarray]
    paths: list[Path]
    sha256: str  # `dataset_sha256` of the files


def load_good_images(data_root: str | Path, category: str, size: int, progress: bool = True) -> GoodImages:
    """`<data_root>/<category>/train/good` at `size`: what both builds read from an MVTec-layout folder (a
    station's captured product is one)."""
    from tqdm import tqdm

    from vision.data.mvtec import MvtecCategory, load_image

    root = Path(data_root)
    paths = list(MvtecCategory.load(root, category, require_test=False).train_good)
    images = [
        load_image(path, size)
        for path in tqdm(paths, desc=f"loading {category}", disable=not progress, leave=False)
    ]
    return GoodImages(images, paths, dataset_sha256(paths, root))
