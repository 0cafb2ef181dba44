"""A deterministic-by-seed synthetic production line: good and defective parts with exact defect masks.

It stands in for a camera on a real line (the simulator camera), and writes datasets in the MVTec AD
layout so training and evaluation read synthetic and real data through the same reader.
Part `i` of a stream depends only on (seed, category, stream, i), never on what was generated before it,
so a dataset or a simulator run can be reproduced exactly, part by part.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from vision.data.defects import Scene
from vision.data.nuisance import apply_camera, sample_lighting
from vision.data.parts import BRACKET_PAINTERS, PCB_PAINTERS, PartProduct, bracket_template, pcb_template
from vision.data.textures import CARPET, STONE, TILE, TextureProduct

GENERATOR_NAME = "edgeinspect.synthetic"
GENERATOR_VERSION = "1"
DEFAULT_CATEGORY = "pcb"
# "default": the legacy line (pcb, bracket and three textures; saturated, kept for continuity).
# "hard": `vision.data.hard_suite`, the development benchmark with a dev/holdout split of categories.
SUITES: tuple[str, ...] = ("default", "hard")

# Separate random streams so simulator parts never repeat the images a model was trained or tested on.
_STREAM_TRAIN, _STREAM_TEST_GOOD, _STREAM_TEST_DEFECT, _STREAM_LINE = 0, 1, 2, 3


class Product(Protocol):
    name: str
    defect_types: tuple[str, ...]

    def render(self, rng: np.random.Generator, size: int) -> Scene: ...

    def add_defect(self, scene: Scene, defect_type: str, rng: np.random.Generator) -> np.ndarray: ...


_PRODUCTS: dict[str, Product] = {
    "pcb": PartProduct("pcb", pcb_template, PCB_PAINTERS),
    "bracket": PartProduct("bracket", bracket_template, BRACKET_PAINTERS),
    "tile": TextureProduct("tile", TILE),
    "stone": TextureProduct("stone", STONE),
    "carpet": TextureProduct("carpet", CARPET),
}

CATEGORIES: tuple[str, ...] = tuple(_PRODUCTS)


@dataclass
class SyntheticPart:
    """One part as the camera sees it. `mask` is 255 exactly where the defect changed the part."""

    image: np.ndarray  # RGB uint8 HxWx3
    mask: np.ndarray  # uint8 HxW in {0, 255}
    defect_type: str | None
    index: int


def _product(category: str) -> Product:
    try:
        return _PRODUCTS[category]
    except KeyError:
        raise ValueError(
            f"unknown category {category!r}; valid categories: {', '.join(CATEGORIES)}"
        ) from None


def defect_types(category: str) -> tuple[str, ...]:
    """The defect types a category can show (the folder names under `test/` in a written dataset)."""
    return _product(category).defect_types


def _check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")


def suite_categories(suite: str) -> tuple[str, ...]:
    """Every category of a suite, in writing order."""
    _check_suite(suite)
    if suite == "hard":
        from vision.data import hard_suite

        return hard_suite.CATEGORIES
    return CATEGORIES


def _suite_defect_types(suite: str, category: str) -> tuple[str, ...]:
    if suite == "hard":
        from vision.data import hard_suite

        hard_suite.product(category)  # a clear error for an unknown name
        return hard_suite.DEFECT_KINDS
    return defect_types(category)


def _render(
    suite: str, category: str, seed: int, stream: int, index: int, defect: str | None, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    if suite == "hard":
        from vision.data.hard_suite import render_hard_part

        return render_hard_part(category, seed, stream, index, defect, image_size)
    part = render_part(category, seed, stream, index, defect, image_size)
    return part.image, part.mask


def _check_size(image_size: int) -> None:
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}")


def render_part(
    category: str, seed: int, stream: int, index: int, defect_type: str | None, image_size: int = 256
) -> SyntheticPart:
    """Render one part. The defect does not change the pose, lighting or noise: with and without a defect,
    the same (seed, stream, index) differ only inside the mask."""
    product = _product(category)
    _check_size(image_size)
    if defect_type is not None and defect_type not in product.defect_types:
        raise ValueError(
            f"unknown defect type {defect_type!r} for {category!r}; valid: {', '.join(product.defect_types)}"
        )
    entropy = [int(seed) & 0xFFFFFFFF, zlib.crc32(category.encode()), int(stream), int(index)]
    pose_rng, defect_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(3)
    )
    scene = product.render(pose_rng, image_size)
    lighting = sample_lighting(pose_rng)
    mask = np.zeros((image_size, image_size), np.uint8)
    if defect_type is not None:
        mask[product.add_defect(scene, defect_type, defect_rng)] = 255
    image = apply_camera(scene.image, lighting, noise_rng)
    return SyntheticPart(image=image, mask=mask, defect_type=defect_type, index=index)


class LineSimulator:
    """An endless stream of parts from one product line, `defect_rate` of them defective."""

    def __init__(self, category: str, seed: int = 0, defect_rate: float = 0.1, image_size: int = 256) -> None:
        self.product = _product(category)
        _check_size(image_size)
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError(f"defect_rate must be within [0, 1], got {defect_rate!r}")
        self.category = category
        self.seed = seed
        self.defect_rate = defect_rate
        self.image_size = image_size
        self._index = 0

    def next_part(self) -> SyntheticPart:
        index = self._index
        self._index += 1
        decide = np.random.default_rng(
            [int(self.seed) & 0xFFFFFFFF, zlib.crc32(self.category.encode()), 99, index]
        )
        defect_type = None
        if decide.random() < self.defect_rate:
            defect_type = self.product.defect_types[int(decide.integers(len(self.product.defect_types)))]
        return render_part(self.category, self.seed, _STREAM_LINE, index, defect_type, self.image_size)


# ------------------------------------------------------------------------------------------ dataset writer

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def _write_png(path: Path, image: np.ndarray) -> None:
    data = image[:, :, ::-1] if image.ndim == 3 else image  # OpenCV encodes BGR
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(data), _PNG_PARAMS)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(encoded.tobytes())


def _plan(
    suite: str, category: str, n_train: int, n_test_good: int, n_per_type: int
) -> list[tuple[str, int, int, str | None]]:
    """(relative folder, stream, index, defect type) for every image of one category, in writing order."""
    jobs: list[tuple[str, int, int, str | None]] = []
    jobs += [("train/good", _STREAM_TRAIN, i, None) for i in range(n_train)]
    jobs += [("test/good", _STREAM_TEST_GOOD, i, None) for i in range(n_test_good)]
    for t, defect in enumerate(_suite_defect_types(suite, category)):
        jobs += [(f"test/{defect}", _STREAM_TEST_DEFECT, t * 100_000 + i, defect) for i in range(n_per_type)]
    return jobs


def _read_manifest(path: Path, suite: str) -> dict[str, object]:
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} exists but is not a readable dataset manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR_NAME:
        raise ValueError(f"{path} was not written by {GENERATOR_NAME}; refusing to write into {path.parent}")
    existing = manifest.get("suite", "default")  # manifests from before suites existed hold the default one
    if existing != suite:
        raise ValueError(
            f"{path.parent} holds the {existing!r} suite; write the {suite!r} suite to another folder "
            "(both name categories tile, stone and carpet)"
        )
    return manifest


_DEFAULT_SIZES: dict[str, int] = {"n_train": 150, "n_test_good": 40, "n_test_defect_per_type": 10}


def suite_sizes(suite: str) -> dict[str, int]:
    """The dataset sizes a suite is written with when the caller does not say."""
    _check_suite(suite)
    if suite == "hard":
        from vision.data.hard_suite import DEFAULT_SIZES

        return dict(DEFAULT_SIZES)
    return dict(_DEFAULT_SIZES)


def write_dataset(
    out_dir: str | os.PathLike[str],
    categories: Sequence[str] | None = None,
    seed: int = 0,
    n_train: int | None = None,
    n_test_good: int | None = None,
    n_test_defect_per_type: int | None = None,
    image_size: int = 256,
    progress: bool = True,
    suite: str = "default",
) -> Path:
    """Write an MVTec AD style dataset and return `out_dir`.

    Sizes left at None take the suite's defaults (`suite_sizes`). Each category is written to a temporary
    folder and swapped in at the end, so an interrupted run never leaves a half-written category. An
    existing category folder is only replaced when `dataset.json` shows this generator wrote it (and the
    same suite); anything else in `out_dir` is left untouched.
    """
    from tqdm.auto import tqdm

    sizes = suite_sizes(suite)
    counts = {
        "n_train": sizes["n_train"] if n_train is None else n_train,
        "n_test_good": sizes["n_test_good"] if n_test_good is None else n_test_good,
        "n_test_defect_per_type": (
            sizes["n_test_defect_per_type"] if n_test_defect_per_type is None else n_test_defect_per_type
        ),
    }
    chosen = _chosen_categories(suite, categories)
    _check_counts(counts)
    _check_size(image_size)

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "dataset.json"
    manifest = _read_manifest(manifest_path, suite)
    known: dict[str, object] = dict(manifest.get("categories", {}))  # type: ignore[arg-type]
    for name in chosen:
        if (root / name).exists() and name not in known:
            raise ValueError(
                f"{root / name} exists and was not written by {GENERATOR_NAME}; refusing to replace it"
            )

    plans = {
        name: _plan(suite, name, counts["n_train"], counts["n_test_good"], counts["n_test_defect_per_type"])
        for name in chosen
    }
    total = sum(len(jobs) for jobs in plans.values())
    with tqdm(total=total, desc="writing dataset", unit="img", disable=not progress) as bar:
        for name, jobs in plans.items():
            render = partial(_render, suite, name, seed, image_size=image_size)
            _write_category(root, name, jobs, render, bar)
            known[name] = {
                "seed": seed,
                "image_size": image_size,
                **counts,
                "defect_types": list(_suite_defect_types(suite, name)),
                **_split_entry(suite, name),
            }
            _write_manifest(manifest_path, known, suite)
    return root


def _chosen_categories(suite: str, categories: Sequence[str] | None) -> list[str]:
    """The categories to write, each known to `suite`, none twice."""
    if isinstance(categories, str):
        raise ValueError("categories must be a sequence of names, not a single string")
    chosen = list(suite_categories(suite) if categories is None else categories)
    for name in chosen:
        _suite_defect_types(suite, name)
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"categories contain duplicates: {chosen}")
    return chosen


def _check_counts(counts: dict[str, int]) -> None:
    for label, value in counts.items():
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
    if counts["n_train"] < 1:
        raise ValueError("n_train must be at least 1: a category without training images is unusable")


def _write_category(
    root: Path,
    name: str,
    jobs: list[tuple[str, int, int, str | None]],
    render: Callable[[int, int, str | None], tuple[np.ndarray, np.ndarray]],
    bar: Any,
) -> None:
    """Render `jobs` (folder, stream, index, defect) into a staging folder, then swap it in whole."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        counters: dict[str, int] = {}
        for folder, stream, index, defect in jobs:
            number = counters.get(folder, 0)
            counters[folder] = number + 1
            image, mask = render(stream, index, defect)
            (staging / folder).mkdir(parents=True, exist_ok=True)
            _write_png(staging / folder / f"{number:03d}.png", image)
            if defect is not None:
                mask_dir = staging / "ground_truth" / defect
                mask_dir.mkdir(parents=True, exist_ok=True)
                _write_png(mask_dir / f"{number:03d}_mask.png", mask)
            bar.update(1)
        if (root / name).exists():
            shutil.rmtree(root / name)
        staging.rename(root / name)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _split_entry(suite: str, category: str) -> dict[str, str]:
    if suite != "hard":
        return {}
    from vision.data.hard_suite import split_of

    return {"split": split_of(category)}


def _write_manifest(path: Path, categories: dict[str, object], suite: str) -> None:
    manifest: dict[str, object] = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "layout": "mvtec_ad",
        "suite": suite,
        "categories": {name: categories[name] for name in sorted(categories)},
    }
    if suite == "hard":
        from vision.data.hard_suite import SPLIT

        # The declared split, whole, even when only some categories were written: dev may guide choices,
        # holdout is reported apart and never used to choose.
        manifest["split"] = {name: list(members) for name, members in SPLIT.items()}
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
