"""Import of KolektorSDD (electrical commutators, Kolektor Group) into the MVTec AD layout: 399 real grey
photographs of about 500 x 1260 px (tall: aspect 0.4), 52 with a fine crack or fracture, pixel masks.

The source is a checkout of https://github.com/stoy95536/KolektorSDD_Yolov8_Datasets, which carries the
images as `Datasets/images/{train,val}/NNN.jpg` and each defect's outline as a YOLO segmentation polygon
in `Datasets/labels/{train,val}/NNN.txt` (class x1 y1 x2 y2 ..., normalised to the image; an empty file is a
good image). The images are KolektorSDD's (Tabernik, Sela, Skvarc, Skocaj: "Segmentation-based deep-learning
approach for surface-defect detection", Journal of Intelligent Manufacturing 2020), CC BY-NC-SA 4.0:
benchmark and development use only, never shipped.

KolektorSDD photographs each commutator 8 times (images 8k .. 8k+7 are one part), so the split is by part:

    <out>/ksdd_dev/        parts of images 000-199 (choose here)
    <out>/ksdd_holdout/    parts of images 200-398 (report once)
        train/good/              `train_count` good images of the split's parts
        test/good/, test/crack/  the rest
        ground_truth/crack/      <name>_mask.png, 0/255, the polygons filled
    <out>/KSDD_LICENSE.txt, <out>/ksdd_import.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.data.importing import (
    SplitImportSummary,
    grey_to_colour_png,
    rank_by_hash,
    read_grey,
    refuse_non_empty,
    write_category,
    write_png,
)
from vision.data.mvtec import DatasetError

CATEGORIES = ("ksdd_dev", "ksdd_holdout")
DEFECT_KIND = "crack"
HOLDOUT_FROM = 200  # images from this number on (25 parts of 8) are the holdout split
LICENSE_FILE = "KSDD_LICENSE.txt"
MANIFEST_FILE = "ksdd_import.json"
SOURCE_HINT = (
    "expected a checkout of github.com/stoy95536/KolektorSDD_Yolov8_Datasets "
    "(Datasets/images/*/NNN.jpg with Datasets/labels/*/NNN.txt)"
)
LICENSE_TEXT = """\
KolektorSDD (Kolektor Surface-Defect Dataset), https://www.vicos.si/resources/kolektorsdd/
Images and annotations (C) Kolektor Group / ViCoS, University of Ljubljana, CC BY-NC-SA 4.0:
  Tabernik, D.; Sela, S.; Skvarc, J.; Skocaj, D. Segmentation-based deep-learning approach for surface-defect
  detection. Journal of Intelligent Manufacturing 31 (2020) 759-776. DOI: 10.1007/s10845-019-01476-x
Taken from the re-packaging at https://github.com/stoy95536/KolektorSDD_Yolov8_Datasets (polygons).

EdgeInspect use: benchmark and development use only, never shipped (not in any image, package or model
release). The folders next to this file were converted by `edgeinspect dataset import ksdd`: grey photographs
stored as 3-channel PNGs, defect polygons filled into 0/255 masks, sorted into the MVTec AD layout.
"""


@dataclass(frozen=True)
class Shot:
    image: Path  # <source>/Datasets/images/<split>/NNN.jpg
    polygons: tuple[np.ndarray, ...]  # each [K, 2] normalised (x, y); empty for a good image

    @property
    def number(self) -> int:
        return int(self.image.stem)

    @property
    def defective(self) -> bool:
        return bool(self.polygons)


def read_polygons(label: Path) -> tuple[np.ndarray, ...]:
    """YOLO segmentation lines `class x1 y1 x2 y2 ...` -> [K, 2] arrays; a malformed line is an error."""
    polygons = []
    for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        try:
            points = np.asarray([float(v) for v in values[1:]], dtype=np.float64)
        except ValueError as exc:
            raise DatasetError(f"{label}:{number}: not a YOLO polygon line ({exc})") from exc
        if points.size < 6 or points.size % 2 or not ((points >= 0) & (points <= 1)).all():
            raise DatasetError(f"{label}:{number}: need at least 3 (x, y) pairs within [0, 1]")
        polygons.append(points.reshape(-1, 2))
    return tuple(polygons)


def read_shots(source: Path) -> list[Shot]:
    """Every image under the checkout with its polygons, sorted by number; each image needs its label."""
    root = Path(source) / "Datasets"
    images = sorted((root / "images").glob("*/*.jpg"))
    if not images:
        raise DatasetError(f"no images under {root / 'images'} ({SOURCE_HINT})")
    shots = []
    for image in images:
        label = root / "labels" / image.parent.name / f"{image.stem}.txt"
        if not label.is_file():
            raise DatasetError(f"image {image} has no label file {label}")
        if not image.stem.isdigit():
            raise DatasetError(f"image {image}: expected a numbered name like 005.jpg ({SOURCE_HINT})")
        shots.append(Shot(image, read_polygons(label)))
    return sorted(shots, key=lambda shot: shot.number)


def plan_split(shots: list[Shot], train_count: int, seed: int) -> dict[str, dict[str, list[Shot]]]:
    """category -> folder -> shots: by part number into DEV and HOLDOUT, then `train_count` good images of
    each to train (ranked by `rank_by_hash`), the rest of its good and all its defective images to test."""
    plan: dict[str, dict[str, list[Shot]]] = {}
    for category, members in zip(
        CATEGORIES,
        ([s for s in shots if s.number < HOLDOUT_FROM], [s for s in shots if s.number >= HOLDOUT_FROM]),
        strict=True,
    ):
        good = rank_by_hash([s for s in members if not s.defective], lambda s: s.image.name, seed)
        defective = [s for s in members if s.defective]
        if len(good) < train_count + 2 or not defective:
            raise DatasetError(
                f"{category}: {len(good)} good and {len(defective)} defective images; need more than "
                f"train_count={train_count} + 2 good and at least one defective ({SOURCE_HINT})"
            )
        plan[category] = {
            "train/good": sorted(good[:train_count], key=_number),
            "test/good": sorted(good[train_count:], key=_number),
            f"test/{DEFECT_KIND}": defective,
        }
    return plan


def _number(shot: Shot) -> int:
    return shot.number


def import_ksdd(
    source: Path,
    out: Path,
    train_count: int = 100,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> SplitImportSummary:
    """Write `ksdd_dev` and `ksdd_holdout` under `out` (see the module docstring); refuses non-empty
    categories unless `overwrite`, and writes each whole or not at all."""
    if train_count < 1:
        raise ValueError(f"train_count must be at least 1, got {train_count!r}")
    source, out = Path(source), Path(out)
    plan = plan_split(read_shots(source), train_count, seed)
    refuse_non_empty(out, CATEGORIES, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    polygons = {s.image: s.polygons for folders in plan.values() for shots in folders.values() for s in shots}

    def convert(image: Path, target: Path) -> None:
        if target.parent.parent.name == "ground_truth":
            write_png(target, fill_mask(read_grey(image, "KolektorSDD image").shape, polygons[image]))
        else:
            grey_to_colour_png(image, target)

    for category, folders in plan.items():
        jobs: list[tuple[Path, Path]] = []
        for folder, shots in folders.items():
            for shot in shots:
                jobs.append((shot.image, Path(folder) / f"{shot.image.stem}.png"))
                if shot.defective:
                    mask = Path("ground_truth") / DEFECT_KIND / f"{shot.image.stem}_mask.png"
                    jobs.append((shot.image, mask))
        write_category(out / category, jobs, convert, progress)
    counts = {c: {folder: len(shots) for folder, shots in folders.items()} for c, folders in plan.items()}
    summary = SplitImportSummary(out=out, seed=seed, counts=counts)
    (out / LICENSE_FILE).write_text(LICENSE_TEXT, encoding="utf-8")
    _write_manifest(out / MANIFEST_FILE, source, summary, train_count)
    return summary


def fill_mask(shape: tuple[int, ...], polygons: tuple[np.ndarray, ...]) -> np.ndarray:
    """0/255 mask of `shape[:2]` with the normalised polygons filled (their outline included)."""
    height, width = shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    scale = np.array([width - 1, height - 1], dtype=np.float64)
    outlines = [np.round(polygon * scale).astype(np.int32) for polygon in polygons]
    cv2.fillPoly(mask, outlines, 255)
    cv2.polylines(mask, outlines, isClosed=True, color=255, thickness=1)
    return mask


def _write_manifest(path: Path, source: Path, summary: SplitImportSummary, train_count: int) -> None:
    manifest = {
        "dataset": "ksdd",
        "source": str(source),
        "license": "CC BY-NC-SA 4.0: benchmarks and development only",
        "layout": "mvtec_ad",
        "seed": summary.seed,
        "train_count": train_count,
        "split": f"by part: images < {HOLDOUT_FROM} ksdd_dev (choose here), the rest ksdd_holdout (report "
        "once)",
        "masks": "YOLO polygons filled to 0/255",
        "total": summary.total,
        "categories": summary.counts,
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
