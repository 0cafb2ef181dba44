"""The hard suite: deterministic bytes, exact masks, nuisance that is never a defect, a declared split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vision.data import hard_suite
from vision.data.hard_suite import (
    CATEGORIES,
    DEFECT_KINDS,
    DEV,
    HOLDOUT,
    SPLIT,
    render_hard_part,
    render_scene,
    split_of,
)
from vision.data.subtle_defects import MAX_SPOT_FRACTION
from vision.data.surfaces import Surface, bundled_photo_path, render_view, source_image
from vision.data.synthetic import SUITES, suite_categories, write_dataset

SIZE = 96
DEFECT_STREAM = 2


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_split_is_declared_disjoint_and_covers_the_suite() -> None:
    assert set(DEV).isdisjoint(HOLDOUT)
    assert set(CATEGORIES) == set(DEV) | set(HOLDOUT)
    assert len(CATEGORIES) >= 10 and len(HOLDOUT) >= 5
    assert {"stone", "carpet"} <= set(CATEGORIES)
    assert SPLIT == {"dev": DEV, "holdout": HOLDOUT}
    assert split_of("stone") == "dev" and split_of(HOLDOUT[0]) == "holdout"
    assert suite_categories("hard") == CATEGORIES and "hard" in SUITES


def test_suite_has_real_photo_and_procedural_surfaces_read_from_bundled_files() -> None:
    sources = [hard_suite.SURFACES[name].source for name in CATEGORIES]
    photos = {s.partition(":")[2] for s in sources if s.startswith("photo:")}
    legacy = {"brick.png", "gravel.png", "grass.png"}
    assert len(photos - legacy) >= 4
    assert 1 <= sum(s.startswith("procedural:") for s in sources) <= 2
    for photo in photos:
        assert bundled_photo_path(photo).is_file()


def test_a_photo_that_is_not_bundled_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="not bundled"):
        source_image(Surface("nope", "photo:not_shipped_anywhere.png"))
    with pytest.raises(ValueError, match="unknown surface source"):
        source_image(Surface("nope", "procedural:marble"))


@pytest.mark.parametrize("category", CATEGORIES)
def test_the_same_seed_gives_the_same_frame_and_another_seed_does_not(category: str) -> None:
    first, good_mask = render_hard_part(category, 3, 0, 5, None, SIZE)
    again, _ = render_hard_part(category, 3, 0, 5, None, SIZE)
    assert not good_mask.any()  # lighting, placement, focus, noise and JPEG are never a defect
    other, _ = render_hard_part(category, 4, 0, 5, None, SIZE)
    assert first.shape == (SIZE, SIZE, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_the_mask_is_exactly_where_the_defect_changed_the_surface(category: str, kind: str) -> None:
    for index in range(2):
        broken, mask, _, _ = render_scene(category, 0, DEFECT_STREAM, index, kind, SIZE)
        intact, none, _, _ = render_scene(category, 0, DEFECT_STREAM, index, None, SIZE)
        assert not none.any()
        assert mask.any(), f"{category}/{kind}: empty mask"
        changed = np.abs(broken - intact).max(axis=2)
        assert changed[~mask].max() == 0, f"{category}/{kind}: pixels outside the mask changed"
        # Each kind changes its region visibly on average (a blur may leave flat pixels as they were).
        assert np.abs(broken - intact)[mask].mean() > 0.005, f"{category}/{kind}: no visible change"


@pytest.mark.parametrize("category", CATEGORIES)
def test_small_spots_cover_at_most_a_fifth_of_a_percent(category: str) -> None:
    for size in (96, 256):
        for index in range(6):
            _, mask = render_hard_part(category, 0, DEFECT_STREAM, index, "spot", size)
            assert 0 < (mask > 0).sum() <= MAX_SPOT_FRACTION * size * size


@pytest.mark.parametrize("category", ["stone", "weave", CATEGORIES[-1]])
def test_thin_scratches_are_one_or_two_pixels_wide(category: str) -> None:
    import cv2

    for index in range(4):
        _, mask = render_hard_part(category, 0, DEFECT_STREAM, index, "thin_scratch", 256)
        area = int((mask > 0).sum())
        eroded = cv2.erode((mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        assert eroded.sum() <= 0.1 * area, "a 3x3 erosion leaves (almost) nothing of a hairline"


def test_nuisance_never_creates_a_mask_and_only_spreads_a_defect_by_jpeg_blocks() -> None:
    category = "tissue"
    for index in range(3):
        _, good_mask = render_hard_part(category, 0, 0, index, None, SIZE)
        assert not good_mask.any()
        broken, mask = render_hard_part(category, 0, DEFECT_STREAM, index, "spot", SIZE)
        intact, _ = render_hard_part(category, 0, DEFECT_STREAM, index, None, SIZE)
        difference = np.abs(broken.astype(np.int16) - intact.astype(np.int16)).max(axis=2)
        # Lighting, focus and noise are identical with and without the defect; JPEG works on 16x16
        # macro-blocks, so nothing changes farther than one block from the mask.
        ys, xs = np.nonzero(mask)
        far = np.ones_like(mask, dtype=bool)
        far[max(ys.min() - 24, 0) : ys.max() + 25, max(xs.min() - 24, 0) : xs.max() + 25] = False
        assert difference[far].max() == 0


def test_good_parts_vary_by_nuisance_and_placement() -> None:
    frames = [render_hard_part("weave", 0, 0, i, None, SIZE)[0].astype(np.int16) for i in range(4)]
    means = [float(f.mean()) for f in frames]
    assert max(means) - min(means) > 3, "no lighting drift between good parts"
    assert all(np.abs(frames[0] - f).mean() > 4 for f in frames[1:])


def test_copied_patch_comes_from_the_same_surface_at_another_grain() -> None:
    surface = hard_suite.SURFACES["weave"]
    rng = np.random.default_rng(0)
    fine, coarse = render_view(surface, rng, 128, 0.55), render_view(surface, rng, 128, 1.8)

    def roughness(image: np.ndarray) -> float:
        return float(np.abs(np.diff(image.mean(axis=2), axis=1)).mean())

    assert roughness(fine) > 1.5 * roughness(coarse)  # coarser grain is smoother at pixel scale


def test_write_hard_suite_is_byte_identical_and_lists_the_split(tmp_path: Path) -> None:
    options = {
        "categories": ["stone", HOLDOUT[0]],
        "n_train": 2,
        "n_test_good": 1,
        "n_test_defect_per_type": 1,
        "image_size": 64,
        "progress": False,
        "suite": "hard",
    }
    first = _tree(write_dataset(tmp_path / "a", seed=1, **options))  # type: ignore[arg-type]
    second = _tree(write_dataset(tmp_path / "b", seed=1, **options))  # type: ignore[arg-type]
    assert first == second
    for kind in DEFECT_KINDS:
        assert f"stone/test/{kind}/000.png" in first
        assert f"stone/ground_truth/{kind}/000_mask.png" in first
    manifest = json.loads(first["dataset.json"])
    assert manifest["suite"] == "hard"
    assert manifest["split"] == {"dev": list(DEV), "holdout": list(HOLDOUT)}
    assert manifest["categories"]["stone"]["split"] == "dev"
    assert manifest["categories"][HOLDOUT[0]]["split"] == "holdout"
    assert manifest["categories"]["stone"]["defect_types"] == list(DEFECT_KINDS)


def test_hard_suite_defaults_to_its_own_modest_sizes(tmp_path: Path) -> None:
    from vision.data.synthetic import suite_sizes

    assert suite_sizes("hard") == {"n_train": 100, "n_test_good": 30, "n_test_defect_per_type": 10}
    assert suite_sizes("default")["n_train"] == 150


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"suite": "impossible"}, "unknown suite 'impossible'; valid suites: default, hard"),
        (
            {"suite": "hard", "categories": ["pcb"]},
            "unknown hard-suite category 'pcb'; valid categories: tile",
        ),
        ({"suite": "default", "categories": ["weave"]}, "unknown category 'weave'"),
    ],
)
def test_unknown_suite_or_category_is_a_clear_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_dataset(tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_suites_are_never_mixed_in_one_folder(tmp_path: Path) -> None:
    sizes = {"n_train": 1, "n_test_good": 0, "n_test_defect_per_type": 0, "image_size": 48, "progress": False}
    write_dataset(tmp_path, ["stone"], **sizes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holds the 'default' suite"):
        write_dataset(tmp_path, ["stone"], suite="hard", **sizes)  # type: ignore[arg-type]


def test_unknown_defect_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown defect kind 'dent'"):
        render_hard_part("stone", 0, 2, 0, "dent", SIZE)
