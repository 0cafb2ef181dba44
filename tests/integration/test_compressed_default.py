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
    small = {"train_images": 16, "memory_bank_size": 128, "head": "bank", "neighbourhood": 1}
    dense = build_default_model("bracket", ModelSettings(**small), tmp_path / "dense.onnx", progress=False)
    compact = build_default_model(
        "bracket",
        ModelSettings(
            **small,
            compression_budget="params=0.6",
            heal_steps=5,
            compression_methods={"memory_bank": "tt:8"},
        ),
        tmp_path / "compact.onnx",
        progress=False,
    )
    assert _weights(compact) < 0.8 * _weights(dense)
    names = [t.name for t in onnx.load(str(compact)).graph.initializer]
    assert any("memory_bank.similarity.cores" in name for name in names), "the bank follows its rule: TT"
    inspector = Inspector(compact)
    assert "params=0.6" in inspector.info.metadata["edgeinspect.compression"]
    assert inspector.info.threshold > 0


def test_the_default_gaussian_head_compresses_its_backbone_and_keeps_its_head(tmp_path: Path) -> None:
    small = {"train_images": 16}
    dense = build_default_model("bracket", ModelSettings(**small), tmp_path / "dense.onnx", progress=False)
    settings = ModelSettings(**small, compression_budget="params=0.8", heal_steps=5)
    compact = build_default_model("bracket", settings, tmp_path / "compact.onnx", progress=False)
    assert _weights(compact) < _weights(dense)  # the head is the same size: the backbone shrank
    names = {t.name for t in onnx.load(str(compact)).graph.initializer}
    assert {"position_gaussian.mean", "position_gaussian.factor"} <= names  # refitted on the student
    assert Inspector(compact).info.threshold > 0


def test_bad_method_rules_fail_before_any_work(tmp_path: Path) -> None:
    budget = {"train_images": 8, "compression_budget": "params=0.5"}
    with pytest.raises(
        ValueError, match=r"no layer matches 'blocks\.99\.\*'.*backbone\.blocks\.1\.0\.conv_pwl"
    ):
        build_default_model(
            "bracket", ModelSettings(**budget, compression_methods={"blocks.99.*": "tt"}), tmp_path / "m.onnx"
        )
    with pytest.raises(ValueError, match="choose one of svd, tucker2, cp, tt, auto, dense"):
        build_default_model(
            "bracket",
            ModelSettings(**budget, compression_methods={"memory_bank": "lowrank"}),
            tmp_path / "m.onnx",
        )
    assert not any(tmp_path.iterdir())


def test_a_bad_budget_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="budget"):
        build_default_model(
            "bracket", ModelSettings(train_images=8, compression_budget="params=two"), tmp_path / "m.onnx"
        )
