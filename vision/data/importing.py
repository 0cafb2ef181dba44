"""What every importer of a public image set into the MVTec AD layout shares (`vision.data.elpv`,
`vision.data.mtd`): a split that is the same on every machine, a refusal to overwrite by accident, and a
category written whole or not at all.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from vision.data.mvtec import DatasetError

T = TypeVar("T")


@dataclass(frozen=True)
class SplitImportSummary:
    """What an importer (`vision.data.mtd`, `vision.data.ksdd`, `vision.data.elpv`) wrote: its DEV and HOLDOUT
    categories, each folder's image count."""

    out: Path
    seed: int
    counts: dict[str, dict[str, int]]  # category -> folder ("train/good", "test/crack", ...) -> images

    @property
    def total(self) -> int:
        return sum(sum(folders.values()) for folders in self.counts.values())


def rank_by_hash(items: Sequence[T], key: Callable[[T], str], seed: int) -> list[T]:
    """`items` in an order fixed by a hash of the seed and each item's key: independent of the order of
    a labels file or of the file system, and of numpy's generator."""
    return sorted(items, key=lambda item: hashlib.sha256(f"{seed}:{key(item)}".encode()).hexdigest())


def refuse_non_empty(out: Path, categories: Sequence[str], overwrite: bool) -> None:
    """Check every category before writing any, so a refusal leaves `out` exactly as it was."""
    if overwrite:
        return
    taken = [out / name for name in categories if (out / name).exists() and any((out / name).iterdir())]
    if taken:
        raise DatasetError(
            f"refusing to write into non-empty {', '.join(map(str, taken))}: "
            "pass --overwrite (overwrite=True) to replace it"
        )


def write_category(
    folder: Path, jobs: Sequence[tuple[Path, Path]], convert: Callable[[Path, Path], None], progress: bool
) -> None:
    """Run `convert(source, staging / relative target)` for each job into a hidden staging folder, then
    rename it to `folder`: an interrupted import leaves no half-filled category behind."""
    from tqdm.auto import tqdm

    # Not mkdtemp: its 0700 mode would become the category's. A leftover of an interrupted run is replaced.
    staging = folder.with_name(f".{folder.name}.importing")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        for source, target in tqdm(jobs, desc=f"importing {folder.name}", unit="img", disable=not progress):
            convert(source, staging / target)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def read_grey(image: Path, what: str) -> np.ndarray:
    try:
        data = np.fromfile(image, dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread
    except OSError as exc:
        raise DatasetError(f"cannot read {what} {image}: {exc}") from exc
    grey = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if grey is None:
        raise DatasetError(f"cannot decode {what} {image} (corrupt, empty or not an image)")
    return grey


def write_png(target: Path, image: np.ndarray) -> None:
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise DatasetError(f"cannot encode {target} as PNG")
    target.parent.mkdir(parents=True, exist_ok=True)
    png.tofile(target)


def grey_to_colour_png(image: Path, target: Path) -> None:
    """Grey image -> 3-channel BGR PNG: the readers and the inspector expect colour frames."""
    write_png(target, cv2.cvtColor(read_grey(image, "image"), cv2.COLOR_GRAY2BGR))
