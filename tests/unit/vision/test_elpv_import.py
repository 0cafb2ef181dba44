"""`edgeinspect dataset import elpv`: the ELPV solar cells land in the MVTec AD layout, split the same way
every time, and a bad labels.csv or an occupied folder is refused with the place named.

All but the last test use a tiny fake source laid out like the `elpv-dataset` package (labels.csv +
images/), so they run without the real (CC BY-NC-SA, never shipped) images installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from vision.data import elpv
from vision.data.elpv import FOLDERS, find_elpv_source, import_elpv, read_elpv_labels
from vision.data.mvtec import DatasetError, MvtecCategory, list_categories, load_image

THIRD, TWO_THIRDS = 1 / 3, 2 / 3
# (kind, probability) per fake cell: both kinds, all four ratings, mixed in file order like the real file.
FAKE_CELLS = [
    ("mono", 1.0),
    ("mono", 0.0),
    ("poly", 0.0),
    ("mono", THIRD),
    ("mono", 0.0),
    ("poly", TWO_THIRDS),
    ("mono", TWO_THIRDS),
    ("poly", 1.0),
    ("mono", 0.0),
    ("poly", 0.0),
    ("poly", THIRD),
    ("mono", 0.0),
    ("poly", 0.0),
]
EXPECTED = {
    "elpv_mono": {
        "train/good": 2,
        "test/good": 2,
        "test/defective": 1,
        "test/likely": 1,
        "test/unlikely": 1,
    },
    "elpv_poly": {
        "train/good": 2,
        "test/good": 1,
        "test/defective": 1,
        "test/likely": 1,
        "test/unlikely": 1,
    },
}


def _label_line(image: str, probability: float, kind: str) -> str:
    """The real labels.csv row: `images/cell0001.png  1.0                 mono`."""
    return f"{image}  {probability!r:<20}{kind}"


def _write_source(folder: Path, rows: list[str] | None = None) -> Path:
    (folder / "images").mkdir(parents=True)
    lines = []
    for number, (kind, probability) in enumerate(FAKE_CELLS, start=1):
        image = f"images/cell{number:04d}.png"
        grey = np.full((16, 16), 10 * number, np.uint8)
        grey[::2, ::2] = 255 - 10 * number  # a pattern, so a channel mix-up would show
        assert cv2.imwrite(str(folder / image), grey)
        lines.append(_label_line(image, probability, kind))
    (folder / "labels.csv").write_text("\n".join(rows if rows is not None else lines) + "\n")
    return folder


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return _write_source(tmp_path / "elpv_dataset" / "data")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []


def _good_split(out: Path, category: str) -> tuple[list[str], list[str]]:
    return _names(out / category / "train/good"), _names(out / category / "test/good")


def test_layout_counts_license_and_manifest(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "real"
    summary = import_elpv(source, out, train_share=0.6, seed=0, progress=False)
    assert summary.counts == EXPECTED and summary.total == len(FAKE_CELLS)
    for category, folders in EXPECTED.items():
        for folder, count in folders.items():
            assert len(_names(out / category / folder)) == count, f"{category}/{folder}"
        assert not (out / category / "ground_truth").exists()
    assert _names(out / "elpv_mono/test/defective") == ["cell0001.png"]
    assert _names(out / "elpv_mono/test/unlikely") == ["cell0004.png"]
    assert _names(out / "elpv_poly/test/likely") == ["cell0006.png"]
    license_text = (out / "ELPV_LICENSE.txt").read_text()
    assert "CC BY-NC-SA 4.0" in license_text and "never shipped" in license_text
    assert "Buerhop-Lutz" in license_text and "Deitsch" in license_text
    manifest = json.loads((out / "elpv_import.json").read_text())
    assert manifest["categories"] == EXPECTED
    assert (manifest["seed"], manifest["train_share"], manifest["total"]) == (0, 0.6, len(FAKE_CELLS))
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a staging folder was left behind"
    assert (out / "elpv_mono").stat().st_mode == out.stat().st_mode, "not the usual folder permissions"


def test_cells_become_three_channel_copies_of_the_grey_pixels(source: Path, tmp_path: Path) -> None:
    import_elpv(source, tmp_path / "real", progress=False)
    written = cv2.imread(str(tmp_path / "real/elpv_mono/test/defective/cell0001.png"), cv2.IMREAD_UNCHANGED)
    grey = cv2.imread(str(source / "images/cell0001.png"), cv2.IMREAD_UNCHANGED)
    assert written.shape == (16, 16, 3) and written.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(written[:, :, channel], grey)


def test_the_mvtec_reader_lists_and_reads_every_image(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "real"
    import_elpv(source, out, progress=False)
    assert list_categories(out) == ["elpv_mono", "elpv_poly"]
    images = sorted(out.glob("elpv_*/*/*/*.png"))
    assert len(images) == len(FAKE_CELLS)
    for image in images:
        assert load_image(image, 32).shape == (32, 32, 3)


def test_the_mvtec_reader_loads_each_category(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "real"
    import_elpv(source, out, progress=False)
    for category, folders in EXPECTED.items():
        loaded = MvtecCategory.load(out, category)
        assert len(loaded.train_good) == folders["train/good"]
        assert loaded.defect_types == ["defective", "likely", "unlikely"]
        assert all(sample.mask_path is None for sample in loaded.test)


def test_good_split_is_disjoint_deterministic_and_independent_of_row_order(
    source: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    import_elpv(source, first, seed=7, progress=False)
    lines = (source / "labels.csv").read_text().splitlines()
    reordered = _write_source(tmp_path / "reordered", rows=lines[::-1])
    import_elpv(reordered, second, seed=7, progress=False)
    for category in EXPECTED:
        train, test = _good_split(first, category)
        assert not set(train) & set(test)
        assert (train, test) == _good_split(second, category)
    all_good = {f"cell{n:04d}.png" for n, (_, p) in enumerate(FAKE_CELLS, start=1) if p == 0.0}
    assert {name for c in EXPECTED for part in _good_split(first, c) for name in part} == all_good


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("images/cell0003.png  0.0", r"labels\.csv:3: expected"),
        ("images/cell0003.png  half  poly", r"labels\.csv:3: probability 'half' is not a number"),
        ("images/cell0003.png  0.5  poly", r"labels\.csv:3: probability 0\.5 is not one of"),
        ("images/cell0003.png  0.0  cigs", r"labels\.csv:3: cell type 'cigs'"),
        ("../cell0003.png  0.0  poly", r"labels\.csv:3: image path .* must stay inside"),
        ("images/cell0001.png  0.0  poly", r"labels\.csv:3: a cell named cell0001\.png is listed twice"),
    ],
)
def test_malformed_row_names_the_file_and_line(source: Path, bad_row: str, message: str) -> None:
    lines = (source / "labels.csv").read_text().splitlines()
    lines[2] = bad_row
    (source / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message):
        read_elpv_labels(source)


def test_refuses_a_non_empty_category_unless_told_to_overwrite(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "real"
    import_elpv(source, out, progress=False)
    stray = out / "elpv_poly/test/good/stray.png"
    stray.write_bytes(b"not from the import")
    with pytest.raises(DatasetError, match=r"refusing to write into non-empty .*elpv_mono"):
        import_elpv(source, out, seed=1, progress=False)
    assert stray.exists() and json.loads((out / "elpv_import.json").read_text())["seed"] == 0
    summary = import_elpv(source, out, seed=1, progress=False, overwrite=True)
    assert not stray.exists() and summary.counts == EXPECTED
    assert json.loads((out / "elpv_import.json").read_text())["seed"] == 1


def test_missing_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elpv, "PACKAGE", "elpv_dataset_that_is_not_installed")
    with pytest.raises(DatasetError, match=r"pip install elpv-dataset.*realdata"):
        find_elpv_source()


def test_cli_imports_from_a_source_folder(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "real"
    argv = ["dataset", "import", "elpv", "--source", str(source), "--out", str(out), "--seed", "3"]
    assert main([*argv, "--train-share", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "elpv_mono" in printed and "elpv_poly" in printed and "train/good" in printed
    assert f"{len(FAKE_CELLS)} cells" in printed
    manifest = json.loads((out / "elpv_import.json").read_text())
    assert (manifest["seed"], manifest["train_share"]) == (3, 0.5)
    assert main(argv) == 2
    assert "refusing to write into non-empty" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_real_elpv_package_imports_all_2624_cells(tmp_path: Path) -> None:
    """The real package (the dev extra installs it): all cells, as the README of the set counts them."""
    source = find_elpv_source()
    cells = read_elpv_labels(source)
    assert len(cells) == 2624
    assert sum(cell.kind == "mono" for cell in cells) == 1074
    summary = import_elpv(source, tmp_path / "real", progress=False)
    assert summary.total == 2624 and set(summary.counts) == {"elpv_mono", "elpv_poly"}
    defective = sum(summary.counts[c]["test/defective"] for c in summary.counts)
    good = sum(summary.counts[c][f] for c in summary.counts for f in FOLDERS if f.endswith("good"))
    assert (good, defective) == (1508, 715)
    written = cv2.imread(str(next((tmp_path / "real/elpv_poly/train/good").glob("*.png"))))
    assert written.shape == (300, 300, 3)
