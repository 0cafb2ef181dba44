"""The hybrid-accuracy benchmark's policy replay (benchmarks/escalation/run_hybrid.py) on synthetic scores:
the band comes from the station's real EscalationBand, parts in it take the accurate verdict, the rest the
edge's, and inputs that do not describe the same images are refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.escalation.run_hybrid import Models, calibrate_band, evaluate, f1, hybrid, load_category


def _models() -> Models:
    """Edge threshold 1.0; the edge errs only on parts just around it, the accurate model never errs."""
    labels = np.array([False] * 8 + [True] * 4)
    edge = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.02, 0.98, 1.5, 1.8, 2.0])
    accurate = np.where(labels, 3.0, 1.0)
    return Models(labels, edge, 1.0, accurate, 2.0)


def test_f1_counts_the_defect_class() -> None:
    labels = np.array([True, True, False, False])
    assert f1(labels, np.array([True, False, True, False])) == pytest.approx(0.5)
    assert f1(labels, labels) == 1.0
    assert f1(labels, np.zeros(4, dtype=bool)) == 0.0


def test_band_escalates_the_target_share_of_good_parts() -> None:
    good = np.random.default_rng(0).normal(0.8, 0.1, 2000)
    for rate in (0.02, 0.05, 0.1):
        band = calibrate_band(good, 1.0, rate)
        low, high = band.bounds(1.0)
        assert np.mean((good >= low) & (good <= high)) == pytest.approx(rate, abs=0.005)


def test_parts_in_the_band_take_the_accurate_verdict_and_the_rest_the_edge_verdict() -> None:
    models = _models()
    band = calibrate_band(models.edge[~models.labels], 1.0, 0.1)
    verdicts, escalated = hybrid(models, band)
    assert escalated[7] and escalated[8] and not escalated[:7].any() and not escalated[9:].any()
    np.testing.assert_array_equal(verdicts, models.labels)  # the accurate model fixed both edge errors
    row = evaluate(models, [0.1])
    assert row["edge_f1"] < row["accurate_f1"] == row["hybrid"]["0.1"]["f1"] == 1.0
    assert row["hybrid"]["0.1"]["gap_points"] == 0.0


def _write(root: Path, variant: str, labels: list[bool], threshold: float) -> None:
    folder = root / "scores" / variant
    folder.mkdir(parents=True)
    record = {"scores": [0.5] * len(labels), "labels": labels, "kinds": ["x"] * len(labels)}
    (folder / "cat.json").write_text(json.dumps({**record, "threshold": threshold}))


def _replay_args(root: Path, accurate: str) -> argparse.Namespace:
    """Arguments of `run_hybrid` over the score files `_write` put under `root`, edge model `edge`."""
    return argparse.Namespace(scores=root / "scores", models=root / "models", edge="edge", accurate=accurate)


def test_score_files_of_different_images_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "edge", [False, True], 1.0)
    _write(tmp_path, "accurate", [True, False], 2.0)
    args = _replay_args(tmp_path, "accurate")
    with pytest.raises(SystemExit, match="scored different images"):
        load_category(args, "cat", [])


def test_an_ensemble_is_scored_by_the_verifiers_rule(tmp_path: Path) -> None:
    """`A+B`: the mean of each member's score over its own threshold, against threshold 1."""
    labels = [False, True]
    _write(tmp_path, "edge", labels, 1.0)
    _write(tmp_path, "a", labels, 0.25)  # every score is 0.5: 2x its threshold
    _write(tmp_path, "b", labels, 1.0)  # 0.5x its threshold
    args = _replay_args(tmp_path, "a+b")
    used: list[dict[str, object]] = []
    models = load_category(args, "cat", used)
    assert models.accurate_threshold == 1.0
    np.testing.assert_allclose(models.accurate, [1.25, 1.25])
    assert len(used) == 3  # edge and both members, each file named in the results


def test_ensemble_members_of_different_images_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "edge", [False, True], 1.0)
    _write(tmp_path, "a", [False, True], 1.0)
    _write(tmp_path, "b", [True, False], 1.0)
    args = _replay_args(tmp_path, "a+b")
    with pytest.raises(SystemExit, match="members of a\\+b scored different images"):
        load_category(args, "cat", [])


def test_an_any_ensemble_takes_the_members_largest_normalised_score(tmp_path: Path) -> None:
    labels = [False, True]
    _write(tmp_path, "edge", labels, 1.0)
    _write(tmp_path, "a", labels, 0.25)  # 2x its threshold
    _write(tmp_path, "b", labels, 1.0)  # 0.5x its threshold
    args = _replay_args(tmp_path, "a|b")
    models = load_category(args, "cat", [])
    np.testing.assert_allclose(models.accurate, [2.0, 2.0])
