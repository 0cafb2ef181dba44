"""`edgeinspect dataset import mtd`: the Magnetic Tile Defect checkout lands in the MVTec AD layout as a DEV
and a HOLDOUT category that share their training tiles and split every defect kind, the same way every
time, with masks a reader can trust. A tiny fake checkout stands in for the real (never shipped) images.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from vision.data.mtd import CATEGORIES, DEFECT_KINDS, import_mtd
from vision.data.mvtec import DatasetError, MvtecCategory, load_image, load_mask

GOOD_TILES = 12
DEFECTS_PER_KIND = 3
TRAIN = 4


def _write_checkout(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for folder, count in [("MT_Free", GOOD_TILES)] + [
        (f"MT_{k.title()}", DEFECTS_PER_KIND) for k in DEFECT_KINDS
    ]:
        imgs = root / folder / "Imgs"
        imgs.mkdir(parents=True)
        for number in range(count):
            height, width = (20, 50) if number % 2 else (40, 16)  # real tiles vary in aspect ratio
            grey = rng.integers(0, 255, (height, width), dtype=np.uint8)
            assert cv2.imwrite(str(imgs / f"exp{number}_num_{number}.jpg"), grey)
            mask = np.zeros((height, width), np.uint8)
            mask[2:6, 3:9] = 250  # the source's masks are noisy around 0 and 255
            mask[0, 0] = 3
            assert cv2.imwrite(str(imgs / f"exp{number}_num_{number}.png"), mask)
    return root


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return _write_checkout(tmp_path / "Magnetic-tile-defect-datasets.")


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_dev_and_holdout_share_training_and_split_every_kind(checkout: Path, tmp_path: Path) -> None:
    summary = import_mtd(checkout, tmp_path / "out", train_count=TRAIN, progress=False)
    dev, holdout = (tmp_path / "out" / name for name in CATEGORIES)
    assert _names(dev / "train" / "good") == _names(holdout / "train" / "good")
    assert len(_names(dev / "train" / "good")) == TRAIN
    good_rest = GOOD_TILES - TRAIN
    assert summary.counts["mtd_dev"]["test/good"] + summary.counts["mtd_holdout"]["test/good"] == good_rest
    assert not _names(dev / "test" / "good") & _names(holdout / "test" / "good")
    assert not _names(dev / "test" / "good") & _names(dev / "train" / "good")
    for kind in DEFECT_KINDS:
        both = _names(dev / "test" / kind) | _names(holdout / "test" / kind)
        assert len(both) == DEFECTS_PER_KIND and _names(dev / "test" / kind)
    for category in CATEGORIES:
        loaded = MvtecCategory.load(tmp_path / "out", category)
        assert loaded.defect_types == sorted(DEFECT_KINDS)
        assert all(s.mask_path is not None for s in loaded.test if s.label == 1)
    assert json.loads((tmp_path / "out" / "mtd_import.json").read_text())["total"] == summary.total


def test_masks_are_thresholded_and_images_keep_their_shape(checkout: Path, tmp_path: Path) -> None:
    import_mtd(checkout, tmp_path / "out", train_count=TRAIN, progress=False)
    loaded = MvtecCategory.load(tmp_path / "out", "mtd_dev")
    sample = next(s for s in loaded.test if s.label == 1)
    assert sample.mask_path is not None
    raw = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(raw)) == {0, 255}
    assert raw[0, 0] == 0 and raw[3, 4] == 255  # the noise pixel (3) is not a defect
    assert load_mask(sample.mask_path, 32).any()
    image = cv2.imread(str(sample.path), cv2.IMREAD_UNCHANGED)
    assert image.ndim == 3 and image.shape[:2] in {(20, 50), (40, 16)}
    assert load_image(sample.path, 32).shape == (32, 32, 3)


def test_the_split_is_the_same_every_time_and_moves_with_the_seed(checkout: Path, tmp_path: Path) -> None:
    import_mtd(checkout, tmp_path / "a", train_count=TRAIN, progress=False)
    import_mtd(checkout, tmp_path / "b", train_count=TRAIN, progress=False)
    import_mtd(checkout, tmp_path / "c", train_count=TRAIN, seed=1, progress=False)

    def train(root: Path) -> set[str]:
        return _names(root / "mtd_dev" / "train" / "good")

    assert train(tmp_path / "a") == train(tmp_path / "b")
    assert train(tmp_path / "a") != train(tmp_path / "c")


def test_a_broken_checkout_is_refused_with_the_place_named(checkout: Path, tmp_path: Path) -> None:
    mask = next((checkout / "MT_Crack" / "Imgs").glob("*.png"))
    mask.unlink()
    with pytest.raises(DatasetError, match=mask.name):
        import_mtd(checkout, tmp_path / "out", train_count=TRAIN, progress=False)
    with pytest.raises(DatasetError, match="MT_Free"):
        import_mtd(tmp_path / "empty", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_an_occupied_category_is_refused_unless_overwrite(checkout: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "mtd_holdout").mkdir(parents=True)
    (out / "mtd_holdout" / "mine.txt").write_text("keep")
    with pytest.raises(DatasetError, match="--overwrite"):
        import_mtd(checkout, out, train_count=TRAIN, progress=False)
    assert not (out / "mtd_dev").exists()
    import_mtd(checkout, out, train_count=TRAIN, progress=False, overwrite=True)
    assert not (out / "mtd_holdout" / "mine.txt").exists()


def test_the_command_line_imports_and_requires_a_source(
    checkout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["dataset", "import", "mtd", "--source", str(checkout), "--out", str(out), "--train-count", "4"]
    assert main(args) == 0
    assert "mtd_dev" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--source"):
        main(["dataset", "import", "mtd", "--out", str(out)])
