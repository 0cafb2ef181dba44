"""The first run can build a tensor-compressed, healed model and the runtime's inspector deploys it."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from app.bootstrap import build_default_model
from vision.config import ModelSettings
from vision.inspector import Inspector

pytestmark = pytest.mark.slow


def _weights(path: Path) -> int:
    return sum(int(onnx.numpy_helper.to_array(t).size) for t in onnx.load(str(path)).graph.initializer)


def test_auto_build_with_a_compression_budget(tmp_path: Path) -> None:
    small = {"train_images": 16, "memory_bank_size": 128}
    dense = build_default_model("bracket", ModelSettings(**small), tmp_path / "dense.onnx", progress=False)
    compact = build_default_model(
        "bracket",
        ModelSettings(**small, compression_budget="params=0.6", heal_steps=5),
        tmp_path / "compact.onnx",
        progress=False,
    )
    assert _weights(compact) < 0.8 * _weights(dense)
    inspector = Inspector(compact)
    assert "params=0.6" in inspector.info.metadata["edgeinspect.compression"]
    assert inspector.info.threshold > 0


def test_a_bad_budget_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="budget"):
        build_default_model(
            "bracket", ModelSettings(train_images=8, compression_budget="params=two"), tmp_path / "m.onnx"
        )
