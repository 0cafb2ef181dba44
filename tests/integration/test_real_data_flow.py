"""A quality engineer's flow on real images, through the real CLI: import the ELPV solar cells, train a model
with the per-position Gaussian head, evaluate it. What they get: an ONNX model that separates real defective
cells from good ones, and a report that gives image figures and no pixel figures (ELPV has no masks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_import_train_and_evaluate_real_cells_with_the_gaussian_head(tmp_path: Path) -> None:
    data, model, report = tmp_path / "real", tmp_path / "mono.onnx", tmp_path / "eval"
    assert main(["dataset", "import", "elpv", "--out", str(data)]) == 0
    # 128 px keeps the test quick on 2 cores; the benchmark (benchmarks/real/) runs at 256.
    args = ["--data", str(data), "--category", "elpv_mono", "--out", str(model), "--image-size", "128"]
    assert main(["train", *args, "--head", "gaussian", "--neighbourhood", "3"]) == 0
    assert main(["eval", *args[:4], "--model", str(model), "--out", str(report), "--heatmaps", "2"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"]["defective"] == 313 + 56 + 117  # every rated cell, certain or not
    assert metrics["pixel_auroc"] is None and metrics["aupro_0.3"] is None
    kinds = metrics["per_defect_kind"]
    # Certainly defective cells are told apart well even at 128 px; the uncertain ratings less so.
    assert kinds["defective"]["image_auroc"] > 0.85
    assert kinds["defective"]["image_auroc"] > kinds["unlikely"]["image_auroc"]
