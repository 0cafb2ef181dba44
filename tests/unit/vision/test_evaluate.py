"""Train from an MVTec-layout folder and evaluate the exported ONNX file on it, end to end on disk."""

from __future__ import annotations

import json

import cv2
import pytest

from vision.config import ModelSettings
from vision.data.mvtec import DatasetError
from vision.data.synthetic import write_dataset
from vision.evaluate import evaluate, worst_images
from vision.inspector import Inspector
from vision.models import read_checkpoint
from vision.train import train_model

SIZE = 64


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_dataset(
        root,
        categories=["tile"],
        n_train=12,
        n_test_good=3,
        n_test_defect_per_type=1,
        image_size=SIZE,
        progress=False,
    )


@pytest.mark.slow
def test_train_then_evaluate_writes_metrics_and_heatmaps(dataset_root, tmp_path) -> None:
    settings = ModelSettings(head="bank", neighbourhood=1, image_size=SIZE, memory_bank_size=64)
    model_path = train_model(dataset_root, "tile", tmp_path / "tile.onnx", settings, progress=False)
    info = Inspector(model_path).info
    assert info.name == "patchcore-efficientnet_lite0-tile"
    assert len(info.metadata["edgeinspect.train_data_sha256"]) == 64
    assert read_checkpoint(model_path.with_suffix(".pt"))["config"]["image_size"] == SIZE

    report = evaluate(dataset_root, "tile", model_path, tmp_path / "eval", heatmaps=4, progress=False)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved == report
    assert report["images"]["total"] == 3 + 5 and report["images"]["defective"] == 5
    for key in ("image_auroc", "pixel_auroc", "aupro_0.3", "best_f1", "f1_at_threshold", "false_reject_rate"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["threshold"] == pytest.approx(info.threshold)
    assert report["latency_ms"]["p50"] > 0
    assert "| Image AUROC |" in (tmp_path / "eval" / "metrics.md").read_text()
    by_size = report["score_vs_defect_size"]  # every synthetic defect has a mask
    assert sum(band["images"] for band in by_size["bands"]) == report["images"]["defective"]
    assert (tmp_path / "eval" / by_size["plot"]).stat().st_size > 0
    assert "## Detection against defect size" in (tmp_path / "eval" / "metrics.md").read_text()
    heatmaps = sorted((tmp_path / "eval" / "heatmaps").glob("*.png"))
    assert len(heatmaps) == 4
    assert cv2.imread(str(heatmaps[0])).shape == (SIZE, 2 * SIZE, 3)


def test_evaluate_reports_a_malformed_folder(tmp_path) -> None:
    (tmp_path / "tile" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError):
        evaluate(tmp_path, "tile", tmp_path / "missing.onnx", tmp_path / "out", progress=False)


def test_worst_images_are_the_top_scoring_good_and_bottom_scoring_defective() -> None:
    labels = [0, 1, 0, 1, 0, 1, 0]
    scores = [0.2, 0.9, 0.7, 0.3, 0.7, 0.1, 0.5]
    false_rejects, misses = worst_images(labels, scores, 2)
    assert false_rejects == [2, 4]  # 0.7 and 0.7: the tie keeps dataset order
    assert misses == [5, 3]  # 0.1, then 0.3
    everything = worst_images(labels, scores, 10)
    assert everything == ([2, 4, 6, 0], [5, 3, 1])
    assert worst_images(labels, scores, 0) == ([], [])
    assert worst_images([1, 1], [0.4, 0.2], 3) == ([], [1, 0])


def test_worst_images_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        worst_images([0, 1], [0.1, 0.2], -1)
    with pytest.raises(ValueError, match="differ in length"):
        worst_images([0, 1], [0.1], 1)
