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
    peak_region,
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
    with pytest.raises(ValueError, match="unmasked_level"):
        DefectTeachOptions(unmasked_level=1.0)


def test_an_unmasked_defect_is_the_region_around_its_peak_not_scattered_spikes() -> None:
    """A 32 x 32 grid of good-looking distances with one defect (a 4 x 6 block, its core the most
    unusual) and isolated spikes elsewhere above the block's rim: the positives are the block, where the
    image's most unusual patches would have been its core and the spikes; never more than the cap."""
    rng = np.random.default_rng(3)
    grid = rng.normal(1.0, 0.05, (32, 32))
    grid[10:14, 20:26] = 2.5
    grid[11:13, 22:24] = 4.0
    spikes = [(2, 3), (28, 5), (25, 29), (5, 15)]
    for row, col in spikes:
        grid[row, col] = 3.0
    chosen = peak_region(grid.reshape(-1), level=0.5, cap=0.1).reshape(32, 32)
    assert chosen[10:14, 20:26].mean() >= 0.8
    assert not any(chosen[row, col] for row, col in spikes)
    assert chosen.sum() <= 4 * 6 + 2 * (4 + 6) + 4  # the block and at most its smoothed rim
    capped = peak_region(grid.reshape(-1), level=0.5, cap=0.005).reshape(32, 32)
    assert capped.sum() == round(0.005 * 32 * 32) == capped[10:14, 20:26].sum()


def test_defects_confirmed_without_a_mask_are_still_learned(gaussian_model: Path) -> None:
    """What a real line gives: an operator confirms an alert, nobody draws the scratch."""
    parent = gaussian_model.read_bytes()
    taught = [LabelledDefect(d.image) for d in _faint_scratches(85, 12)]
    check = [d.image for d in _faint_scratches(86, 12)]
    result = teach_defects(parent, taught, _good(87, 36), check, DefectTeachOptions())
    report = result.report
    assert report.defects_with_mask == 0 and report.positive_patches >= 12
    assert report.positive_patches <= 12 * round(0.1 * 32 * 32)
    assert any("without a mask" in note for note in report.notes)
    assert report.detection_rate_check is not None
    assert report.detection_rate_check.after > report.detection_rate_check.before
    assert report.false_reject_rate_good.after <= 0.1


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
