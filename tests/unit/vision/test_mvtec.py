"""The MVTec AD reader: reads what the generator writes, and names the path when a folder is malformed."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.data.mvtec import DatasetError, MvtecCategory, list_categories, load_image, load_mask
from vision.data.synthetic import defect_types, render_part, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return write_dataset(
        root,
        ["pcb", "carpet"],
        seed=2,
        n_train=3,
        n_test_good=2,
        n_test_defect_per_type=2,
        image_size=64,
        progress=False,
    )


@pytest.fixture
def copy(dataset: Path, tmp_path: Path) -> Path:
    """A private copy of one category to break in a test."""
    shutil.copytree(dataset / "pcb", tmp_path / "pcb")
    return tmp_path


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_written_dataset_reads_back(dataset: Path) -> None:
    assert list_categories(dataset) == ["carpet", "pcb"]
    category = MvtecCategory.load(dataset, "pcb")
    assert category.name == "pcb"
    assert [p.name for p in category.train_good] == ["000.png", "001.png", "002.png"]
    assert category.defect_types == sorted(defect_types("pcb"))
    good = [s for s in category.test if s.label == 0]
    bad = [s for s in category.test if s.label == 1]
    assert len(good) == 2 and all(s.defect_type == "good" and s.mask_path is None for s in good)
    assert len(bad) == 2 * len(defect_types("pcb"))
    for sample in bad:
        assert sample.mask_path is not None and sample.mask_path.name == sample.path.stem + "_mask.png"
        assert load_mask(sample.mask_path, 64).any()
    assert not load_mask(None, 64).any() and load_mask(None, 64).shape == (64, 64)
    category.verify(progress=False)


def test_load_image_returns_exactly_the_generated_rgb_pixels(dataset: Path) -> None:
    first_train = render_part("pcb", 2, 0, 0, None, 64)  # stream 0 = train, index 0
    image = load_image(dataset / "pcb/train/good/000.png", 64)
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert np.array_equal(image, first_train.image)
    assert load_image(dataset / "pcb/train/good/000.png", 32).shape == (32, 32, 3)


def test_other_formats_grayscale_mismatched_masks_and_visa_mask_names(tmp_path: Path) -> None:
    root = tmp_path / "line"
    rgb_red = np.zeros((40, 60, 3), np.uint8)
    rgb_red[:, :, 2] = 200  # OpenCV writes BGR: this is red
    _write(root / "cam/train/good/a.jpg", rgb_red)
    _write(root / "cam/train/good/b.bmp", rgb_red)
    _write(root / "cam/train/good/c.JPEG", np.full((30, 30), 90, np.uint8))  # grayscale
    (root / "cam/train/good/notes.txt").write_text("ignored")
    _write(root / "cam/test/good/g.png", rgb_red)
    _write(root / "cam/test/dent/d.png", rgb_red)
    mask = np.zeros((20, 20), np.uint8)
    mask[:10, :10] = 255
    _write(root / "cam/ground_truth/dent/d.png", mask)  # VisA-style name, different size

    category = MvtecCategory.load(root, "cam")
    assert [p.name for p in category.train_good] == ["a.jpg", "b.bmp", "c.JPEG"]
    red = load_image(category.train_good[1], 16)
    assert red[..., 0].min() == 200 and red[..., 2].max() == 0  # RGB order
    gray = load_image(category.train_good[2], 16)
    assert gray.shape == (16, 16, 3) and np.all(gray == 90)
    defect = next(s for s in category.test if s.label == 1)
    resized = load_mask(defect.mask_path, 40)
    assert resized.shape == (40, 40) and resized[:20, :20].all() and not resized[20:, :].any()


def test_missing_root_and_category(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(DatasetError, match="dataset root not found"):
        MvtecCategory.load(tmp_path / "nowhere", "pcb")
    with pytest.raises(DatasetError, match="dataset root not found"):
        list_categories(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"'bottle' not found.*categories under .*: carpet, pcb"):
        MvtecCategory.load(dataset, "bottle")


def test_missing_or_empty_train_good(copy: Path) -> None:
    train = copy / "pcb/train/good"
    for image in train.iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match=f"no images in {train}"):
        MvtecCategory.load(copy, "pcb")
    train.rmdir()
    with pytest.raises(DatasetError, match=r"missing training folder .*train/good"):
        MvtecCategory.load(copy, "pcb")


def test_missing_test_folder(copy: Path) -> None:
    shutil.rmtree(copy / "pcb/test")
    with pytest.raises(DatasetError, match="missing test folder"):
        MvtecCategory.load(copy, "pcb")


def test_defect_image_without_mask_names_both_paths(copy: Path) -> None:
    (copy / "pcb/ground_truth/scratch/001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"test/scratch/001\.png has no mask: expected .*001_mask\.png"):
        MvtecCategory.load(copy, "pcb")


def test_a_defect_type_without_ground_truth_is_labelled_by_image_only(copy: Path) -> None:
    shutil.rmtree(copy / "pcb/ground_truth/scratch")
    category = MvtecCategory.load(copy, "pcb")
    scratches = [s for s in category.test if s.defect_type == "scratch"]
    assert scratches and all(s.label == 1 and s.mask_path is None for s in scratches)
    assert all(s.mask_path is not None for s in category.test if s.label == 1 and s.defect_type != "scratch")


def test_corrupt_png_is_reported_with_its_path(copy: Path) -> None:
    broken = copy / "pcb/train/good/001.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG
    (copy / "pcb/test/good/000.png").write_bytes(b"")
    category = MvtecCategory.load(copy, "pcb")  # structure is fine; pixels are checked on read
    with pytest.raises(DatasetError, match=r"cannot decode image file .*001\.png"):
        load_image(broken, 64)
    with pytest.raises(DatasetError, match=r"cannot decode image file .*test/good/000\.png"):
        load_mask(copy / "pcb/test/good/000.png", 64)
    with pytest.raises(DatasetError, match=r"001\.png"):
        category.verify(progress=False)
    with pytest.raises(DatasetError, match="cannot read image file"):
        load_image(copy / "pcb/missing.png", 64)


def test_bad_size_is_rejected(dataset: Path) -> None:
    with pytest.raises(ValueError, match="size must be a positive integer"):
        load_image(dataset / "pcb/train/good/000.png", 0)
