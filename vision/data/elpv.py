"""Import of the ELPV solar-cell electroluminescence images into the MVTec AD layout, so real images of a
real product enter training and evaluation the same way the synthetic line does (see `vision.data.mvtec`).

ELPV (the `elpv-dataset` package, the project's `realdata` extra) is 2,624 cells of 300x300 8-bit grey,
each rated by experts as defective with probability 0, 1/3, 2/3 or 1 and taken from a mono- or a
polycrystalline module. It is CC BY-NC-SA 4.0: for benchmarks and development only, never shipped.

    <out>/elpv_<kind>/train/good/       a seeded share of the probability-0 cells
    <out>/elpv_<kind>/test/good/        the other probability-0 cells
    <out>/elpv_<kind>/test/unlikely/    probability 1/3   (the uncertain ratings stay apart, as their own
    <out>/elpv_<kind>/test/likely/      probability 2/3    defect types, so a report shows them separately)
    <out>/elpv_<kind>/test/defective/   probability 1
    <out>/ELPV_LICENSE.txt, <out>/elpv_import.json

ELPV has no pixel annotations, so no ground_truth/ masks are written.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from vision.data.importing import (
    SplitImportSummary,
    grey_to_colour_png,
    rank_by_hash,
    refuse_non_empty,
    write_category,
)
from vision.data.mvtec import DatasetError

PACKAGE = "elpv_dataset"
LABELS_FILE = "labels.csv"
CELL_KINDS: tuple[Literal["mono", "poly"], ...] = ("mono", "poly")
# Expert rating (probability x 3) -> the folder the cell goes to; 0 is split into train/good and test/good.
FOLDER_BY_RATING = {0: "good", 1: "unlikely", 2: "likely", 3: "defective"}
FOLDERS = ("train/good", "test/good", "test/defective", "test/likely", "test/unlikely")
LICENSE_FILE = "ELPV_LICENSE.txt"
MANIFEST_FILE = "elpv_import.json"
INSTALL_HINT = "install it with `pip install elpv-dataset` (the `realdata` extra in pyproject.toml)"
LICENSE_TEXT = """\
ELPV solar-cell electroluminescence images (elpv-dataset, https://github.com/zae-bayern/elpv-dataset)

License: Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International (CC BY-NC-SA 4.0),
https://creativecommons.org/licenses/by-nc-sa/4.0/

Source:
  Buerhop-Lutz, C.; Deitsch, S.; Maier, A.; Gallwitz, F.; Berger, S.; Doll, B.; Hauch, J.; Camus, C. &
  Brabec, C. J. A Benchmark for Visual Identification of Defective Solar Cells in Electroluminescence
  Imagery. EU PVSEC 2018. DOI: 10.4229/35thEUPVSEC20182018-5CV.3.15
  Deitsch, S.; Christlein, V.; Berger, S.; Buerhop-Lutz, C.; Maier, A.; Gallwitz, F. & Riess, C. Automatic
  classification of defective photovoltaic module cells in electroluminescence images. Solar Energy 185
  (2019) 455-468. DOI: 10.1016/j.solener.2019.02.067
  Deitsch, S. et al. Segmentation of photovoltaic module cells in uncalibrated electroluminescence images.
  Machine Vision and Applications 32(4) (2021). DOI: 10.1007/s00138-021-01191-9

EdgeInspect use: benchmark and development use only, never shipped (not in any image, package or model
release). The folders next to this file were converted by `edgeinspect dataset import elpv`: grey cells
copied as 3-channel PNGs and sorted into the MVTec AD layout by their defect probability.
"""


@dataclass(frozen=True)
class ElpvCell:
    """One row of labels.csv."""

    image: str  # relative to the source folder, e.g. "images/cell0001.png"
    probability: float  # 0, 1/3, 2/3 or 1
    kind: Literal["mono", "poly"]

    @property
    def rating(self) -> int:
        """The expert rating 0..3 behind the probability (the CSV stores 0.3333333333333333, not 1/3)."""
        return round(self.probability * 3)


@dataclass(frozen=True)
class ElpvImportSummary(SplitImportSummary):
    """What the ELPV import wrote (mono cells DEV, poly cells HOLDOUT), and the good cells' train share."""

    train_share: float


def find_elpv_source() -> Path:
    """The data folder (labels.csv + images/) of the installed elpv-dataset package, found without
    importing it (its loader pulls in Pillow, which this project does not need)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"the ELPV images are not installed: {INSTALL_HINT}")
    source = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (source / LABELS_FILE).is_file():
        raise DatasetError(
            f"the elpv-dataset package has no {source / LABELS_FILE}: reinstall it ({INSTALL_HINT})"
        )
    return source


def read_elpv_labels(source: Path) -> list[ElpvCell]:
    """The cells in labels.csv (`<image> <probability> <mono|poly>`, whitespace-separated), in file order."""
    labels = Path(source) / LABELS_FILE
    try:
        lines = labels.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read the ELPV labels {labels}: {exc}") from exc
    cells: list[ElpvCell] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cell = _parse_row(line, f"{labels}:{number}")
        name = Path(cell.image).name  # cells are written under their file name
        if name in seen:
            raise DatasetError(f"{labels}:{number}: a cell named {name} is listed twice")
        seen.add(name)
        cells.append(cell)
    if not cells:
        raise DatasetError(f"no cells in {labels}")
    return cells


def _parse_row(line: str, where: str) -> ElpvCell:
    fields = line.split()
    expected = "expected '<image path> <probability 0|0.333|0.667|1> <mono|poly>'"
    if len(fields) != 3:
        raise DatasetError(f"{where}: {expected}, got {line!r}")
    image, probability_text, kind = fields
    try:
        probability = float(probability_text)
    except ValueError:
        raise DatasetError(
            f"{where}: probability {probability_text!r} is not a number ({expected})"
        ) from None
    rating = probability * 3
    if (
        not math.isfinite(rating)
        or abs(rating - round(rating)) > 1e-6
        or round(rating) not in FOLDER_BY_RATING
    ):
        raise DatasetError(f"{where}: probability {probability_text} is not one of 0, 1/3, 2/3, 1")
    if kind not in CELL_KINDS:
        raise DatasetError(f"{where}: cell type {kind!r} is neither 'mono' nor 'poly'")
    path = Path(image)
    if path.is_absolute() or ".." in path.parts:
        raise DatasetError(f"{where}: image path {image!r} must stay inside the source folder")
    return ElpvCell(image=image, probability=probability, kind=cast(Literal["mono", "poly"], kind))


def category_name(kind: str) -> str:
    return f"elpv_{kind}"


def split_good(cells: list[ElpvCell], train_share: float, seed: int) -> tuple[list[ElpvCell], list[ElpvCell]]:
    """(train, test) good cells. Each cell's place comes from a hash of the seed and its path, so the
    split does not depend on the order of labels.csv or of the file system, nor on numpy's generator."""
    if len(cells) < 2:
        raise DatasetError(
            f"{len(cells)} good cell(s): need at least 2 to fill both train/good and test/good"
        )
    n_train = min(len(cells) - 1, max(1, round(train_share * len(cells))))
    ranked = rank_by_hash(cells, lambda cell: cell.image, seed)
    train = sorted(ranked[:n_train], key=lambda cell: cell.image)
    test = sorted(ranked[n_train:], key=lambda cell: cell.image)
    return train, test


def plan_category(cells: list[ElpvCell], train_share: float, seed: int) -> dict[str, list[ElpvCell]]:
    """Folder -> the cells of one kind that go there."""
    good = [cell for cell in cells if cell.rating == 0]
    train, test = split_good(good, train_share, seed)
    plan: dict[str, list[ElpvCell]] = {folder: [] for folder in FOLDERS}
    plan["train/good"], plan["test/good"] = train, test
    for cell in sorted(cells, key=lambda cell: cell.image):
        if cell.rating:
            plan[f"test/{FOLDER_BY_RATING[cell.rating]}"].append(cell)
    return plan


def import_elpv(
    source: Path,
    out: Path,
    train_share: float = 0.6,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> ElpvImportSummary:
    """Write `elpv_mono` and `elpv_poly` under `out` in the MVTec AD layout (see the module docstring).

    Refuses a non-empty category folder unless `overwrite`, then replaces it whole; each category is
    written to a hidden staging folder and renamed into place, so an interrupted import leaves no
    half-filled category behind. Other folders under `out` are left alone."""
    if not 0.0 < train_share < 1.0:
        raise ValueError(f"train_share must be between 0 and 1 (exclusive), got {train_share!r}")
    source, out = Path(source), Path(out)
    cells = read_elpv_labels(source)
    plans = {
        category_name(kind): plan_category([c for c in cells if c.kind == kind], train_share, seed)
        for kind in CELL_KINDS
        if any(c.kind == kind for c in cells)
    }
    refuse_non_empty(out, list(plans), overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for category, plan in plans.items():
        jobs = [
            (source / cell.image, Path(folder) / Path(cell.image).name)
            for folder, cells in plan.items()
            for cell in cells
        ]
        write_category(out / category, jobs, grey_to_colour_png, progress)
    counts = {category: {folder: len(plan[folder]) for folder in FOLDERS} for category, plan in plans.items()}
    summary = ElpvImportSummary(out=out, seed=seed, train_share=train_share, counts=counts)
    (out / LICENSE_FILE).write_text(LICENSE_TEXT, encoding="utf-8")
    _write_manifest(out / MANIFEST_FILE, source, summary)
    return summary


def _write_manifest(path: Path, source: Path, summary: ElpvImportSummary) -> None:
    manifest = {
        "dataset": "elpv",
        "source": str(source),
        "license": "CC BY-NC-SA 4.0: benchmark and development use only, never shipped (ELPV_LICENSE.txt)",
        "layout": "mvtec_ad",
        "seed": summary.seed,
        "train_share": summary.train_share,
        "folders_by_probability": {
            "0": "train/good + test/good",
            "1/3": "test/unlikely",
            "2/3": "test/likely",
            "1": "test/defective",
        },
        "masks": "none (ELPV has image-level labels only)",
        "total": summary.total,
        "categories": summary.counts,
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
