"""Import of the Magnetic Tile Defect set (MTD) into the MVTec AD layout: real photographs of industrial
parts, 100 to 600 px with aspect ratios from 0.4 to 2.6, five real defect kinds with pixel masks.

The source is a checkout of https://github.com/abin24/Magnetic-tile-defect-datasets. (`MT_<Kind>/Imgs/`:
`<name>.jpg` grey photograph + `<name>.png` mask). It carries no licence file; its authors welcome research
use with a citation (Huang, Qiu, Yuan: "Surface defect saliency of magnetic tile", The Visual Computer
2020). Benchmark and development use only, never shipped.

Two categories share one training set, so a choice made on one is reported on the other:

    <out>/mtd_dev/train/good/            `train_count` good tiles (the same in both)
    <out>/mtd_dev/test/good/             half of the other good tiles
    <out>/mtd_dev/test/<kind>/           half of each defect kind (blowhole, break, crack, fray, uneven)
    <out>/mtd_dev/ground_truth/<kind>/   <name>_mask.png, 0/255
    <out>/mtd_holdout/...                the other halves
    <out>/MTD_LICENSE.txt, <out>/mtd_import.json

The masks are stored as JPEG-like noise around 0 and 255 in the source; they are thresholded at 128.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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

GOOD_FOLDER = "MT_Free"
DEFECT_KINDS = ("blowhole", "break", "crack", "fray", "uneven")
CATEGORIES = ("mtd_dev", "mtd_holdout")
LICENSE_FILE = "MTD_LICENSE.txt"
MANIFEST_FILE = "mtd_import.json"
SOURCE_HINT = (
    "expected a checkout of github.com/abin24/Magnetic-tile-defect-datasets. "
    "(folders MT_Free, MT_Blowhole, ... each with Imgs/*.jpg and *.png masks)"
)
LICENSE_TEXT = """\
Magnetic Tile Defect dataset (https://github.com/abin24/Magnetic-tile-defect-datasets.)

No licence file is published with it; its authors write "It is welcomed to use our dataset. And if it is used
in your research, please cite our paper":
  Huang, Y.; Qiu, C.; Yuan, K. Surface defect saliency of magnetic tile. The Visual Computer 36 (2020) 85-96.
  DOI: 10.1007/s00371-018-1588-5

EdgeInspect use: benchmark and development use only, never shipped (not in any image, package or model
release). The folders next to this file were converted by `edgeinspect dataset import mtd`: grey photographs
stored as 3-channel PNGs, masks thresholded to 0/255, sorted into the MVTec AD layout.
"""


@dataclass(frozen=True)
class Tile:
    image: Path  # <source>/MT_<Kind>/Imgs/<name>.jpg
    kind: str  # "good" or one of DEFECT_KINDS

    @property
    def mask(self) -> Path:
        return self.image.with_suffix(".png")


def read_tiles(source: Path) -> list[Tile]:
    """Every tile under `source`, good and defective, sorted by path; defect tiles need their mask."""
    source = Path(source)
    folders = {"good": source / GOOD_FOLDER} | {kind: source / f"MT_{kind.title()}" for kind in DEFECT_KINDS}
    missing = [str(folder) for folder in folders.values() if not (folder / "Imgs").is_dir()]
    if missing:
        raise DatasetError(f"not an MTD checkout: missing {', '.join(missing)} ({SOURCE_HINT})")
    tiles: list[Tile] = []
    for kind, folder in folders.items():
        images = sorted((folder / "Imgs").glob("*.jpg"))
        if not images:
            raise DatasetError(f"no .jpg images in {folder / 'Imgs'} ({SOURCE_HINT})")
        for image in images:
            if kind != "good" and not image.with_suffix(".png").is_file():
                raise DatasetError(f"defect image {image} has no mask {image.with_suffix('.png')}")
            tiles.append(Tile(image, kind))
    return tiles


def plan_split(tiles: list[Tile], train_count: int, seed: int) -> dict[str, dict[str, list[Tile]]]:
    """category -> folder -> tiles. Good tiles: `train_count` to train (shared), the rest halved into DEV
    and HOLDOUT test; each defect kind halved the same way. Ranks come from `rank_by_hash`."""
    good = [tile for tile in tiles if tile.kind == "good"]
    if len(good) < train_count + 2:
        raise DatasetError(f"{len(good)} good tiles: need more than train_count={train_count} + 2")
    ranked_good = rank_by_hash(good, lambda tile: tile.image.name, seed)
    train, rest = ranked_good[:train_count], ranked_good[train_count:]
    plan: dict[str, dict[str, list[Tile]]] = {c: {"train/good": sorted(train, key=_path)} for c in CATEGORIES}
    for kind in ("good", *DEFECT_KINDS):
        members = rest if kind == "good" else [tile for tile in tiles if tile.kind == kind]
        ranked = rank_by_hash(members, lambda tile: tile.image.name, seed)
        half = (len(ranked) + 1) // 2
        plan["mtd_dev"][f"test/{kind}"] = sorted(ranked[:half], key=_path)
        plan["mtd_holdout"][f"test/{kind}"] = sorted(ranked[half:], key=_path)
    return plan


def _path(tile: Tile) -> str:
    return str(tile.image)


def import_mtd(
    source: Path,
    out: Path,
    train_count: int = 300,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> SplitImportSummary:
    """Write `mtd_dev` and `mtd_holdout` under `out` (see the module docstring); refuses non-empty
    categories unless `overwrite`, and writes each whole or not at all."""
    if train_count < 1:
        raise ValueError(f"train_count must be at least 1, got {train_count!r}")
    source, out = Path(source), Path(out)
    plan = plan_split(read_tiles(source), train_count, seed)
    refuse_non_empty(out, CATEGORIES, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for category, folders in plan.items():
        jobs: list[tuple[Path, Path]] = []
        for folder, tiles in folders.items():
            for tile in tiles:
                name = f"{tile.image.stem}.png"
                jobs.append((tile.image, Path(folder) / name))
                if tile.kind != "good":
                    jobs.append((tile.mask, Path("ground_truth") / tile.kind / f"{tile.image.stem}_mask.png"))
        write_category(out / category, jobs, _convert, progress)
    counts = {c: {folder: len(tiles) for folder, tiles in folders.items()} for c, folders in plan.items()}
    summary = SplitImportSummary(out=out, seed=seed, counts=counts)
    (out / LICENSE_FILE).write_text(LICENSE_TEXT, encoding="utf-8")
    _write_manifest(out / MANIFEST_FILE, source, summary, train_count)
    return summary


def _convert(source: Path, target: Path) -> None:
    if target.parent.parent.name == "ground_truth":
        write_png(target, (read_grey(source, "MTD mask") >= 128).astype("uint8") * 255)
    else:
        grey_to_colour_png(source, target)


def _write_manifest(path: Path, source: Path, summary: SplitImportSummary, train_count: int) -> None:
    manifest = {
        "dataset": "mtd",
        "source": str(source),
        "license": "no licence file; research use with a citation: benchmarks and development only",
        "layout": "mvtec_ad",
        "seed": summary.seed,
        "train_count": train_count,
        "split": "train/good shared; test halves: mtd_dev (choose here), mtd_holdout (report once)",
        "masks": "thresholded at 128 to 0/255",
        "total": summary.total,
        "categories": summary.counts,
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
