"""The README's command-line flow as a user runs it: `dataset make` -> `train` -> `eval`; `run` errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def edgeinspect(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_dataset_train_eval(tmp_path: Path) -> None:
    data = tmp_path / "dataset"
    made = edgeinspect(
        "dataset", "make", "--out", str(data), "--categories", "pcb",
        "--n-train", "16", "--n-test-good", "4", "--n-test-defect", "2",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (data / "pcb" / "test").iterdir()) == sorted(
        ["good", "missing_component", "scratch", "contamination", "burn"]
    )

    model = tmp_path / "pcb.onnx"
    trained = edgeinspect(
        "train", "--data", str(data), "--category", "pcb", "--out", str(model), "--memory-bank-size", "128"
    )
    assert trained.returncode == 0, trained.stderr
    assert model.exists() and model.with_suffix(".pt").exists()

    out = tmp_path / "eval"
    evaluated = edgeinspect(
        "eval",
        "--data",
        str(data),
        "--category",
        "pcb",
        "--model",
        str(model),
        "--out",
        str(out),
        "--heatmaps",
        "2",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    text = json.dumps(metrics)
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert key in text
    assert (out / "metrics.md").read_text().strip()
    assert len(list((out / "heatmaps").glob("*.png"))) == 2


def test_eval_on_a_malformed_folder_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "widget" / "train").mkdir(parents=True)
    result = edgeinspect(
        "eval", "--data", str(tmp_path), "--category", "widget", "--model", str(tmp_path / "m.onnx"), "--out",
        str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "edgeinspect: error:" in result.stderr and "widget" in result.stderr


def test_run_refuses_a_bad_config_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("camera:\n  fps: -3\nmqtt:\n  url: tcp://broker\n")
    result = edgeinspect("run", "--config", str(config), "--data-dir", str(tmp_path), timeout=60)
    assert result.returncode == 2
    assert "camera.fps" in result.stderr and "mqtt.url" in result.stderr


def test_run_refuses_a_missing_model_when_auto_build_is_off(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  auto_build: false\n")
    result = edgeinspect("run", "--config", str(config), "--data-dir", str(tmp_path), timeout=60)
    assert result.returncode == 2
    assert "model.path" in result.stderr and "auto_build" in result.stderr


def test_a_second_run_on_the_same_data_dir_refuses_to_start(edge_stack) -> None:
    """Two runtimes on one data directory would drain one outbox twice; the second names the first."""
    second = edgeinspect("run", "--config", str(edge_stack.data_dir / "config.yaml"), timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"in use by pid {edge_stack.process.pid}" in second.stderr
    assert edge_stack.process.poll() is None  # the first one keeps running
    status = httpx.get(f"{edge_stack.base_url}/status", headers=edge_stack.headers("viewer"), timeout=10)
    assert status.status_code == 200 and status.json()["state"] == "running"
