"""`edgeinspect dataset import ksdd`: the KolektorSDD checkout (images + YOLO polygons) lands in the MVTec AD
layout as a DEV and a HOLDOUT category split by part, with the polygons filled into masks that cover the
defect and nothing else. A tiny fake checkout stands in for the real (never shipped) images.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from vision.data.ksdd import CATEGORIES, HOLDOUT_FROM, import_ksdd, read_polygons
from vision.data.mvtec import DatasetError, MvtecCategory

HEIGHT, WIDTH = 50, 20  # tall, as the real commutators (500 x 1260)
DEFECTIVE = {3, 11, HOLDOUT_FROM + 2, HOLDOUT_FROM + 9}
NUMBERS = [*range(0, 16), *range(HOLDOUT_FROM, HOLDOUT_FROM + 16)]
TRAIN = 6
# A defect in the top-left quarter: x 0.1-0.4, y 0.1-0.3 of the image.
POLYGON = "0 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3"


def _write_checkout(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for number in NUMBERS:
        split = "val" if number % 5 == 0 else "train"  # the re-packaging spreads images over two folders
        image = root / "Datasets" / "images" / split / f"{number:03d}.jpg"
        label = root / "Datasets" / "labels" / split / f"{number:03d}.txt"
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(image), rng.integers(0, 255, (HEIGHT, WIDTH), dtype=np.uint8))
        label.write_text(POLYGON + "\n" if number in DEFECTIVE else "")
    return root


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return _write_checkout(tmp_path / "KolektorSDD_Yolov8_Datasets")


def _numbers(folder: Path) -> set[int]:
    return {int(p.stem) for p in folder.iterdir()} if folder.is_dir() else set()


def test_split_by_part_with_every_defect_in_test(checkout: Path, tmp_path: Path) -> None:
    summary = import_ksdd(checkout, tmp_path / "out", train_count=TRAIN, progress=False)
    dev, holdout = (tmp_path / "out" / name for name in CATEGORIES)
    dev_all = (
        _numbers(dev / "train" / "good") | _numbers(dev / "test" / "good") | _numbers(dev / "test" / "crack")
    )
    holdout_all = (
        _numbers(holdout / "train" / "good")
        | _numbers(holdout / "test" / "good")
        | _numbers(holdout / "test" / "crack")
    )
    assert dev_all == set(range(16)) and holdout_all == set(range(HOLDOUT_FROM, HOLDOUT_FROM + 16))
    assert _numbers(dev / "test" / "crack") | _numbers(holdout / "test" / "crack") == DEFECTIVE
    for category in (dev, holdout):
        assert len(_numbers(category / "train" / "good")) == TRAIN
        assert not _numbers(category / "train" / "good") & DEFECTIVE
        loaded = MvtecCategory.load(tmp_path / "out", category.name)
        assert loaded.defect_types == ["crack"]
        assert all(s.mask_path is not None for s in loaded.test if s.label == 1)
    assert json.loads((tmp_path / "out" / "ksdd_import.json").read_text())["total"] == summary.total == 32
    again = import_ksdd(checkout, tmp_path / "again", train_count=TRAIN, progress=False)
    assert _numbers(tmp_path / "again" / "ksdd_dev" / "train" / "good") == _numbers(dev / "train" / "good")
    assert again.counts == summary.counts


def test_masks_fill_the_polygon_and_images_keep_their_shape(checkout: Path, tmp_path: Path) -> None:
    import_ksdd(checkout, tmp_path / "out", train_count=TRAIN, progress=False)
    mask = cv2.imread(str(tmp_path / "out" / "ksdd_dev" / "ground_truth" / "crack" / "003_mask.png"), 0)
    assert mask is not None and mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask)) == {0, 255}
    assert mask[10, 5] == 255  # inside: x 5/19 ~ 0.26, y 10/49 ~ 0.2
    assert mask[40, 15] == 0 and mask[:, 12:].sum() == 0  # far corner, and right of x = 0.4
    image = cv2.imread(
        str(tmp_path / "out" / "ksdd_dev" / "test" / "crack" / "003.png"), cv2.IMREAD_UNCHANGED
    )
    assert image is not None and image.shape == (HEIGHT, WIDTH, 3)


def test_bad_labels_and_checkouts_are_refused_with_the_reason(checkout: Path, tmp_path: Path) -> None:
    bad = checkout / "Datasets" / "labels" / "train" / "001.txt"
    bad.write_text("0 0.1 0.2 1.5 0.3 0.4 0.4\n")
    with pytest.raises(DatasetError, match=r"001\.txt:1: need at least 3 \(x, y\) pairs within \[0, 1\]"):
        read_polygons(bad)
    bad.write_text("0 0.1 x 0.2\n")
    with pytest.raises(DatasetError, match=r"001\.txt:1: not a YOLO polygon line"):
        import_ksdd(checkout, tmp_path / "out", train_count=TRAIN, progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    bad.unlink()
    with pytest.raises(DatasetError, match="has no label file"):
        import_ksdd(checkout, tmp_path / "out", train_count=TRAIN, progress=False)
    with pytest.raises(DatasetError, match="no images under"):
        import_ksdd(tmp_path / "empty", tmp_path / "out", progress=False)


def test_cli_imports_and_refuses_to_overwrite(
    checkout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["dataset", "import", "ksdd", "--source", str(checkout), "--out", str(out), "--train-count", "6"]
    assert main(args) == 0
    assert "ksdd_dev: train/good 6" in capsys.readouterr().out
    assert main(args) != 0  # the CLI names the refusal instead of a traceback
    assert "refusing to write into non-empty" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
