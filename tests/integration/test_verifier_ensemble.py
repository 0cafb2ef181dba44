"""The verifier's ensemble through real ONNX Runtime sessions: two model files with different calibrated
thresholds, combined by each rule, against the single-model verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.plant.verifier import VerifierEngine
from vision.export import META_THRESHOLD, export_onnx
from vision.models.checkpoint import load_checkpoint, read_checkpoint


@pytest.fixture(scope="module")
def strict_twin(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The same network exported with twice the threshold: every score is half as far over it."""
    checkpoint = trained_model.with_suffix(".pt")
    metadata = dict(read_checkpoint(checkpoint)["extra"]["metadata"])
    threshold = float(metadata[META_THRESHOLD])
    metadata[META_THRESHOLD] = repr(2.0 * threshold)
    model = load_checkpoint(checkpoint)
    out = tmp_path_factory.mktemp("twin") / "strict.onnx"
    export_onnx(model, out, metadata, model.config.image_size)
    return out, threshold


def test_rules_combine_real_members_as_documented(
    trained_model: Path, strict_twin: tuple[Path, float]
) -> None:
    frame = np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    single = VerifierEngine([trained_model], threads=1).judge(frame)
    ratio = single.score / single.threshold  # the trained model's own score over its threshold
    any_rule = VerifierEngine([trained_model, strict_twin[0]], threads=1, rule="any")
    mean_rule = VerifierEngine([trained_model, strict_twin[0]], threads=1, rule="mean")
    any_verdict, mean_verdict = any_rule.judge(frame), mean_rule.judge(frame)
    assert any_verdict.threshold == mean_verdict.threshold == 1.0
    assert any_verdict.score == pytest.approx(ratio, rel=1e-3)  # the looser member decides
    assert mean_verdict.score == pytest.approx(0.75 * ratio, rel=1e-3)  # (r + r/2) / 2
    assert any_verdict.is_defect == (ratio >= 1.0)
    assert any_rule.model_version.count("+") == 1


def test_an_unknown_rule_fails_before_loading_models(trained_model: Path) -> None:
    with pytest.raises(ValueError, match="unknown ensemble rule"):
        VerifierEngine([trained_model], rule="majority")
