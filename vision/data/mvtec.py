"""Reader for the MVTec AD folder layout, so MVTec AD, converted VisA, a line's own images and the
synthetic datasets all enter training and evaluation the same way.

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect_type>/*.png
    <root>/<category>/ground_truth/<defect_type>/<stem>_mask.png   (or <stem>.png)

A defect type without a ground_truth folder is labelled by image only (ELPV, a line's reviewed alerts):
its images count for image metrics, not pixel ones. Where the folder exists, each image needs its mask.

Problems are reported as `DatasetError` naming the path, at load time for the structure and at read time
for the pixels (decoding every file up front would make opening MVTec AD slow; `verify()` does it on request).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
GOOD = "good"


class DatasetError(ValueError):
    """The dataset folder does not have the expected layout, or a file in it cannot be read."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 good, 1 defect
    defect_type: str  # "good" for good samples
    mask_path: Path | None


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_mask(mask_dir: Path, image: Path) -> Path | None:
    for stem in (f"{image.stem}_mask", image.stem):
        for suffix in IMAGE_SUFFIXES:
            for candidate in (mask_dir / f"{stem}{suffix}", mask_dir / f"{stem}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def list_categories(root: str | os.PathLike[str]) -> list[str]:
    """Names of the folders under `root` that look like categories (they have a `train/` folder)."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"dataset root not found or not a folder: {base}")
    return [p.name for p in _subfolders(base) if (p / "train").is_dir()]


@dataclass(frozen=True)
class MvtecCategory:
    name: str
    root: Path
    train_good: list[Path]
    test: list[Sample]

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for s in self.test if s.label == 1})

    @classmethod
    def load(cls, root: str | os.PathLike[str], category: str, require_test: bool = True) -> MvtecCategory:
        """`require_test=False` (training) accepts a category with good training images only, e.g. one
        just captured from the camera, with no test folder yet."""
        base = Path(root)
        if not base.is_dir():
            raise DatasetError(f"dataset root not found or not a folder: {base}")
        folder = base / category
        if not folder.is_dir():
            found = list_categories(base)
            raise DatasetError(
                f"category {category!r} not found: {folder} does not exist "
                f"(categories under {base}: {', '.join(found) if found else 'none'})"
            )
        train_dir = folder / "train" / GOOD
        if not train_dir.is_dir():
            raise DatasetError(f"missing training folder {train_dir} (expected good images in train/good/)")
        train_good = _images_in(train_dir)
        if not train_good:
            raise DatasetError(f"no images in {train_dir} (accepted: {', '.join(IMAGE_SUFFIXES)})")
        test_dir = folder / "test"
        if not require_test and not test_dir.exists():
            return cls(name=category, root=folder, train_good=train_good, test=[])
        if not test_dir.is_dir():
            raise DatasetError(
                f"missing test folder {test_dir} (expected test/good/ and test/<defect_type>/)"
            )
        test: list[Sample] = []
        for type_dir in _subfolders(test_dir):
            defect_type = type_dir.name
            for image in _images_in(type_dir):
                if defect_type == GOOD:
                    test.append(Sample(image, 0, GOOD, None))
                    continue
                mask_dir = folder / "ground_truth" / defect_type
                if not mask_dir.is_dir():  # labelled by image only (e.g. ELPV): no pixel metrics for it
                    test.append(Sample(image, 1, defect_type, None))
                    continue
                mask = _find_mask(mask_dir, image)
                if mask is None:
                    raise DatasetError(
                        f"defect image {image} has no mask: expected {mask_dir / (image.stem + '_mask.png')}"
                    )
                test.append(Sample(image, 1, defect_type, mask))
        if not test:
            raise DatasetError(f"no test images under {test_dir}")
        return cls(name=category, root=folder, train_good=train_good, test=test)

    def iter_files(self) -> Iterator[Path]:
        yield from self.train_good
        for sample in self.test:
            yield sample.path
            if sample.mask_path is not None:
                yield sample.mask_path

    def verify(self, progress: bool = True) -> None:
        """Decode every image and mask once, so a corrupt file fails now rather than mid-training."""
        from tqdm.auto import tqdm

        files = list(self.iter_files())
        for path in tqdm(files, desc=f"checking {self.name}", unit="file", disable=not progress):
            _decode(path, cv2.IMREAD_UNCHANGED)


def _decode(path: str | os.PathLike[str], flags: int) -> np.ndarray:
    file = Path(path)
    try:
        data = np.fromfile(file, dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread
    except OSError as exc:
        raise DatasetError(f"cannot read image file {file}: {exc}") from exc
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DatasetError(f"cannot decode image file {file} (corrupt, empty or not an image)")
    return image


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")


def load_image(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """RGB uint8 size x size. Grayscale is expanded, alpha dropped, 16-bit scaled to 8-bit."""
    _check_size(size)
    image = _decode(path, cv2.IMREAD_COLOR)
    if image.shape[:2] != (size, size):
        shrinking = image.shape[0] > size or image.shape[1] > size
        image = cv2.resize(
            image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
    return np.ascontiguousarray(image[:, :, ::-1])


def load_mask(path: str | os.PathLike[str] | None, size: int) -> np.ndarray:
    """bool size x size; all False for a good image (no mask). Any non-zero pixel counts as defect."""
    _check_size(size)
    if path is None:
        return np.zeros((size, size), bool)
    mask = _decode(path, cv2.IMREAD_GRAYSCALE)
    if mask.shape != (size, size):
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return mask > 0
