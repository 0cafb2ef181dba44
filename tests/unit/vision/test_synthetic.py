"""The synthetic line: deterministic, defects visible with exact masks, good parts genuinely varied."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.data.defects import MIN_AREA_FRACTION
from vision.data.synthetic import (
    CATEGORIES,
    DEFAULT_CATEGORY,
    LineSimulator,
    SyntheticPart,
    defect_types,
    render_part,
    write_dataset,
)
from vision.metrics import image_auroc

ALL_DEFECTS = [(category, defect) for category in CATEGORIES for defect in defect_types(category)]


def test_catalogue_has_textures_procedural_parts_and_enough_defect_types() -> None:
    assert {"pcb", "bracket", "tile", "stone", "carpet"} <= set(CATEGORIES)
    assert DEFAULT_CATEGORY == "pcb"
    for category in CATEGORIES:
        assert len(defect_types(category)) >= 4, category


def test_unknown_category_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="valid categories: pcb, bracket"):
        LineSimulator("widget")


@pytest.mark.parametrize("kwargs", [{"defect_rate": 1.5}, {"defect_rate": -0.1}, {"image_size": 8}])
def test_bad_simulator_arguments_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LineSimulator("pcb", **kwargs)


def test_part_contract() -> None:
    simulator = LineSimulator("pcb", seed=1, defect_rate=1.0, image_size=128)
    parts = [simulator.next_part() for _ in range(3)]
    assert [p.index for p in parts] == [0, 1, 2]
    for part in parts:
        assert isinstance(part, SyntheticPart)
        assert part.image.shape == (128, 128, 3) and part.image.dtype == np.uint8
        assert part.mask.shape == (128, 128) and part.mask.dtype == np.uint8
        assert set(np.unique(part.mask)) == {0, 255}
        assert part.defect_type in defect_types("pcb")


@pytest.mark.parametrize("category", CATEGORIES)
def test_same_seed_gives_identical_parts_and_other_seeds_differ(category: str) -> None:
    first = LineSimulator(category, seed=5, defect_rate=0.5)
    second = LineSimulator(category, seed=5, defect_rate=0.5)
    other = LineSimulator(category, seed=6, defect_rate=0.5)
    for _ in range(4):
        a, b, c = first.next_part(), second.next_part(), other.next_part()
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert a.defect_type == b.defect_type
        assert not np.array_equal(a.image, c.image)


def test_defect_rate_controls_the_share_of_defective_parts() -> None:
    never = LineSimulator("stone", seed=0, defect_rate=0.0, image_size=64)
    always = LineSimulator("stone", seed=0, defect_rate=1.0, image_size=64)
    assert all(never.next_part().defect_type is None for _ in range(20))
    defective = [always.next_part() for _ in range(20)]
    assert all(p.defect_type is not None and p.mask.any() for p in defective)
    some = LineSimulator("stone", seed=0, defect_rate=0.3, image_size=64)
    count = sum(some.next_part().defect_type is not None for _ in range(100))
    assert 12 <= count <= 50  # binomial(100, 0.3) lies here with overwhelming probability
    assert len({p.defect_type for p in defective}) >= 3  # types are drawn, not fixed


@pytest.mark.parametrize(("category", "defect"), ALL_DEFECTS)
def test_every_defect_is_visible_and_its_mask_is_exactly_what_changed(category: str, defect: str) -> None:
    for index in range(3):
        broken = render_part(category, 0, 2, index, defect)
        intact = render_part(category, 0, 2, index, None)  # same pose, light and noise, no defect
        inside = broken.mask > 0
        assert inside.sum() >= MIN_AREA_FRACTION * inside.size, f"{category}/{defect}: defect too small"
        difference = np.abs(broken.image.astype(np.int16) - intact.image.astype(np.int16)).mean(axis=2)
        assert difference[~inside].max() == 0, "pixels outside the mask changed"
        # Sensor noise is at most ~5 grey levels; a visible defect changes the region far more than that.
        assert difference[inside].mean() > 20, f"{category}/{defect}: change {difference[inside].mean():.1f}"
        assert not intact.mask.any() and intact.defect_type is None


@pytest.mark.parametrize("category", CATEGORIES)
def test_good_parts_differ_from_each_other(category: str) -> None:
    parts = [render_part(category, 0, 0, i, None, 128).image.astype(np.int16) for i in range(3)]
    for a, b in ((0, 1), (1, 2), (0, 2)):
        difference = np.abs(parts[a] - parts[b])
        assert difference.mean() > 4, "good parts are near-identical: no nuisance variation"


@pytest.mark.parametrize("category", ["pcb", "bracket"])
def test_golden_template_differencing_does_not_solve_the_task(category: str) -> None:
    """Pose, light and noise must hide defects from a naive per-pixel comparison with a mean good part."""
    size = 96
    template = np.mean([render_part(category, 0, 0, i, None, size).image for i in range(16)], axis=0)

    def score(image: np.ndarray) -> float:
        difference = np.abs(image.astype(np.float32) - template).mean(axis=2)
        return float(cv2.GaussianBlur(difference.astype(np.float32), (0, 0), 2).max())

    labels, scores = [], []
    for i in range(12):
        labels.append(0)
        scores.append(score(render_part(category, 0, 1, i, None, size).image))
    for t, defect in enumerate(defect_types(category)):
        for i in range(3):
            labels.append(1)
            scores.append(score(render_part(category, 0, 2, t * 100 + i, defect, size).image))
    assert image_auroc(labels, scores) < 0.9


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_dataset_layout_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    options = {"categories": ["pcb", "tile"], "n_train": 2, "n_test_good": 2, "n_test_defect_per_type": 1}
    first = write_dataset(tmp_path / "a", seed=3, image_size=64, progress=False, **options)
    second = write_dataset(tmp_path / "b", seed=3, image_size=64, progress=False, **options)
    third = write_dataset(tmp_path / "c", seed=4, image_size=64, progress=False, **options)
    assert first == tmp_path / "a"
    files = _tree(first)
    assert files == _tree(second)
    assert files["pcb/train/good/000.png"] != _tree(third)["pcb/train/good/000.png"]
    expected = {"pcb/train/good/000.png", "pcb/train/good/001.png", "pcb/test/good/001.png", "dataset.json"}
    for category in ("pcb", "tile"):
        for defect in defect_types(category):
            expected |= {
                f"{category}/test/{defect}/000.png",
                f"{category}/ground_truth/{defect}/000_mask.png",
            }
    assert expected <= set(files)
    assert not any(name.startswith(".") for name in files)  # no staging folders left behind
    manifest = json.loads(files["dataset.json"])
    assert manifest["generator_version"] and set(manifest["categories"]) == {"pcb", "tile"}
    assert manifest["categories"]["pcb"]["seed"] == 3 and manifest["categories"]["pcb"]["n_train"] == 2
    image = cv2.imread(str(first / "pcb/train/good/000.png"))
    assert image.shape == (64, 64, 3)


def test_write_dataset_shows_progress_and_adds_categories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(tmp_path, ["bracket"], n_train=1, n_test_good=1, n_test_defect_per_type=1, image_size=48)
    assert "writing dataset" in capsys.readouterr().err
    write_dataset(
        tmp_path, ["stone"], n_train=1, n_test_good=1, n_test_defect_per_type=1, image_size=48, progress=False
    )
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    assert set(manifest["categories"]) == {"bracket", "stone"}
    assert (tmp_path / "bracket/train/good/000.png").is_file() and (
        tmp_path / "stone/train/good/000.png"
    ).is_file()


def test_write_dataset_never_overwrites_a_folder_it_did_not_write(tmp_path: Path) -> None:
    precious = tmp_path / "pcb" / "train" / "good" / "mine.png"
    precious.parent.mkdir(parents=True)
    precious.write_bytes(b"user data")
    with pytest.raises(ValueError, match="not written by"):
        write_dataset(tmp_path, ["pcb"], n_train=1, n_test_good=0, n_test_defect_per_type=0, progress=False)
    assert precious.read_bytes() == b"user data"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"categories": ["pcb", "nope"]}, "unknown category 'nope'"),
        ({"categories": "pcb"}, "not a single string"),
        ({"n_train": 0}, "n_train"),
        ({"n_test_good": -1}, "n_test_good"),
        ({"image_size": 10}, "image_size"),
    ],
)
def test_write_dataset_rejects_bad_arguments_before_writing(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_dataset(tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()
