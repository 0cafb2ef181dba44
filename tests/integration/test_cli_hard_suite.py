"""`dataset make --suite hard` -> `train` -> `eval` through the real CLI: per-kind AUROC and worst images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from vision.data.hard_suite import DEFECT_KINDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SIZE = 64


def edgeinspect(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_eval_reports_auroc_per_defect_kind_and_the_worst_images(tmp_path: Path) -> None:
    data = tmp_path / "hard"
    made = edgeinspect(
        "dataset", "make", "--suite", "hard", "--out", str(data), "--categories", "stone",
        "--n-train", "12", "--n-test-good", "4", "--n-test-defect", "1", "--image-size", str(SIZE),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (data / "stone" / "test").iterdir()) == sorted(["good", *DEFECT_KINDS])
    assert json.loads((data / "dataset.json").read_text())["categories"]["stone"]["split"] == "dev"

    model = tmp_path / "stone.onnx"
    trained = edgeinspect(
        "train", "--data", str(data), "--category", "stone", "--out", str(model),
        "--image-size", str(SIZE), "--memory-bank-size", "64",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr

    out = tmp_path / "eval"
    evaluated = edgeinspect(
        "eval", "--data", str(data), "--category", "stone", "--model", str(model), "--out", str(out),
        "--heatmaps", "0", "--worst", "3",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((out / "metrics.json").read_text())

    per_kind = report["per_defect_kind"]
    assert list(per_kind) == sorted(DEFECT_KINDS)  # folders are read in name order
    for values in per_kind.values():
        assert values["images"] == 1
        assert 0.0 <= values["image_auroc"] <= 1.0
        assert values["detected_at_threshold"] in (0.0, 1.0)

    worst = report["worst"]
    false_rejects, misses = worst["false_rejects"], worst["misses"]
    assert len(false_rejects) == 3 and len(misses) == 3
    assert all(e["defect_type"] == "good" for e in false_rejects)
    assert all(e["defect_type"] in DEFECT_KINDS for e in misses)
    assert [e["score"] for e in false_rejects] == sorted((e["score"] for e in false_rejects), reverse=True)
    assert [e["score"] for e in misses] == sorted(e["score"] for e in misses)
    markdown = (out / "metrics.md").read_text()
    assert "## Per defect kind" in markdown and "| faint_stain | 1 |" in markdown
    for entry in false_rejects + misses:
        overlay = out / entry["overlay"]
        assert cv2.imread(str(overlay)).shape == (SIZE, 2 * SIZE, 3)
        assert entry["path"] in markdown and f"{entry['score']:.4f}" in markdown
    names = sorted(p.name for p in (out / "worst").glob("*.png"))
    assert len(names) == 6
    assert [n[:15] for n in names[:3]] == ["false_reject_01", "false_reject_02", "false_reject_03"]
    assert [n[:7] for n in names[3:]] == ["miss_01", "miss_02", "miss_03"]


def test_dataset_make_names_the_valid_categories_of_the_hard_suite(tmp_path: Path) -> None:
    result = edgeinspect(
        "dataset", "make", "--suite", "hard", "--out", str(tmp_path / "d"), "--categories", "pcb", timeout=60
    )
    assert result.returncode == 2
    assert "unknown hard-suite category 'pcb'" in result.stderr and "stone" in result.stderr
