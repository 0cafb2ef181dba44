"""Teaching confirmed defects (`vision.teach_defects`): a faint defect the unsupervised model lets through is
caught once a few confirmed examples are taught, good parts stay good, the file keeps the box's contract,
and teaching again replaces the branch instead of stacking another one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision import onnx_proto
from vision.data.synthetic import LineSimulator
from vision.inspector import Inspector
from vision.teach import TeachError
from vision.teach_defects import (
    META_DEFECTS_TAUGHT,
    DefectTeachOptions,
    LabelledDefect,
    fit_classifier,
    teach_defects,
)

REPO = Path(__file__).resolve().parents[3]
CATEGORY = "bracket"


@pytest.fixture(scope="module")
def gaussian_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    out = tmp_path_factory.mktemp("gaussian") / "gaussian.onnx"
    return build_default_model(CATEGORY, ModelSettings(train_images=40), out, progress=False)


def _good(seed: int, count: int) -> list[np.ndarray]:
    simulator = LineSimulator(CATEGORY, seed=seed, defect_rate=0.0)
    return [cv2.cvtColor(simulator.next_part().image, cv2.COLOR_RGB2BGR) for _ in range(count)]


def _faint_scratches(seed: int, count: int) -> list[LabelledDefect]:
    """Good parts with a thin scratch a few grey levels darker, and its mask: what a line confirms."""
    rng = np.random.default_rng(seed)
    defects = []
    for image in _good(seed, count):
        height, width = image.shape[:2]
        x0, y0 = int(rng.integers(width // 4, width // 2)), int(rng.integers(height // 4, height // 2))
        x1, y1 = x0 + int(rng.integers(30, 60)), y0 + int(rng.integers(-20, 20))
        mask = np.zeros((height, width), np.uint8)
        cv2.line(mask, (x0, y0), (x1, y1), 255, 3)
        scratched = image.astype(np.int16)
        scratched[mask > 0] -= 18
        defects.append(LabelledDefect(np.clip(scratched, 0, 255).astype(np.uint8), mask))
    return defects


def test_taught_defects_are_caught_on_new_parts_and_good_parts_stay_good(
    gaussian_model: Path, tmp_path: Path
) -> None:
    parent = gaussian_model.read_bytes()
    taught, check = _faint_scratches(81, 12), _faint_scratches(82, 12)
    good = _good(83, 36)
    stages: list[str] = []
    result = teach_defects(
        parent, taught, good, [d.image for d in check], DefectTeachOptions(), lambda f, s: stages.append(s)
    )
    report = result.report
    assert report.defects_taught == 12 and report.defects_with_mask == 12 and report.positive_patches > 12
    assert report.detection_rate_check is not None
    assert report.detection_rate_check.after > report.detection_rate_check.before
    assert report.detection_rate_check.after >= 0.75
    assert report.false_reject_rate_good.after <= 0.1
    assert stages[-1] == "done"
    child = tmp_path / "child.onnx"
    child.write_bytes(result.model_bytes)
    inspector = Inspector(child, threads=1)  # the box's contract checks pass
    assert inspector.info.metadata[META_DEFECTS_TAUGHT] == "12"
    new_good = _good(84, 10)
    assert sum(inspector.inspect(frame).is_defect for frame in new_good) <= 1

    again = teach_defects(result.model_bytes, taught[:6], good, options=DefectTeachOptions())
    first, second = (onnx_proto.load_model(data) for data in (result.model_bytes, again.model_bytes))
    assert len(second.graph.node) == len(first.graph.node)  # the branch's numbers replaced, not stacked
    assert onnx_proto.metadata(second)[META_DEFECTS_TAUGHT] == "6"


def _without_gaussian_head(data: bytes) -> bytes:
    """The model with its head's tensors renamed: to teaching, a model whose head is not a Gaussian."""
    model = onnx_proto.load_model(data)
    for tensor in model.graph.initializer:
        tensor.name = tensor.name.replace("position_gaussian", "other_head")
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = name.replace("position_gaussian", "other_head")
    return bytes(model.SerializeToString())


def test_refusals_name_the_reason(gaussian_model: Path) -> None:
    parent = gaussian_model.read_bytes()
    good = _good(91, 6)
    with pytest.raises(TeachError, match="needs a per-position Gaussian head"):
        teach_defects(_without_gaussian_head(parent), _faint_scratches(92, 2), good)
    with pytest.raises(TeachError, match="no confirmed defects"):
        teach_defects(parent, [], good)
    with pytest.raises(TeachError, match="at least 6 held-back good images"):
        teach_defects(parent, _faint_scratches(92, 2), good[:3])
    with pytest.raises(ValueError, match="scale"):
        DefectTeachOptions(scale=0.0)


def test_the_classifier_separates_what_it_is_shown() -> None:
    rng = np.random.default_rng(0)
    negatives = rng.normal(0.0, 1.0, size=(2000, 5))
    positives = rng.normal(0.0, 1.0, size=(40, 5)) + np.array([0, 0, 4.0, 0, 0])
    classifier = fit_classifier(positives, negatives)
    assert (classifier.logits(positives) > 0).mean() > 0.9
    assert (classifier.logits(negatives) > 0).mean() < 0.1


def test_the_classifier_learns_two_kinds_of_defect_on_opposite_sides() -> None:
    """Dark and bright defects leave the good cloud in opposite directions: no straight cut keeps both
    away from the good patches, one hidden layer does (and the same inputs give the same classifier)."""
    rng = np.random.default_rng(1)
    negatives = rng.normal(0.0, 1.0, size=(3000, 4))
    shift = np.array([0, 5.0, 0, 0])
    positives = np.r_[rng.normal(0.0, 1.0, (30, 4)) + shift, rng.normal(0.0, 1.0, (30, 4)) - shift]
    classifier = fit_classifier(positives, negatives)
    fresh_dark, fresh_bright = rng.normal(0.0, 1.0, (200, 4)) - shift, rng.normal(0.0, 1.0, (200, 4)) + shift
    fresh_good = rng.normal(0.0, 1.0, (2000, 4))
    assert (classifier.logits(fresh_dark) > 0).mean() > 0.9
    assert (classifier.logits(fresh_bright) > 0).mean() > 0.9
    assert (classifier.logits(fresh_good) > 0).mean() < 0.05
    again = fit_classifier(positives, negatives)
    assert np.allclose(again.logits(fresh_good), classifier.logits(fresh_good), rtol=0.0, atol=1e-9)


def test_classifier_options_are_checked() -> None:
    with pytest.raises(ValueError, match="hidden >= 1"):
        DefectTeachOptions(hidden=0)


def test_teaching_defects_needs_neither_torch_nor_onnx() -> None:
    script = (
        "import sys\n"
        "for name in ('torch', 'onnx', 'scipy', 'torchvision', 'timm'):\n"
        "    sys.modules[name] = None\n"
        "import vision.teach_defects\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
