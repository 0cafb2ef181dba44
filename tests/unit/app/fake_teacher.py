"""The fake runtime's learner: the real `device.station.teaching.TeachJobs` run it like the box's
`ArchiveLearner`.

It looks frames up in the fake's real image archive, as the box does, but the fake's models are not ONNX,
so "learning" registers a new fake model version whose figures come from the archived parts' own scores:
a taught false alarm scores like a good part afterwards; good parts and confirmed defects keep theirs.
Teaching defects: every taught or held-out confirmed defect is caught afterwards, good parts keep their
scores. `gaussian_head = False` makes the active model one that cannot be taught defects (a memory bank).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

import numpy as np

from device.station.alerts import AlertStore
from device.station.archive import ImageArchive
from device.station.model_registry import ModelEntry
from device.station.teaching import Learned
from vision.teach import BeforeAfter, ProgressFn, TeachError, TeachReport
from vision.teach_defects import DefectTeachReport


class Register(Protocol):
    """`ModelRegistry.register` as the fake registry has it."""

    def __call__(
        self,
        data: bytes,
        filename: str,
        expected_sha256: str,
        teach: TeachReport | None = None,
        teach_defects: DefectTeachReport | None = None,
    ) -> ModelEntry: ...


class FakeLearner:
    def __init__(
        self,
        alert_store: AlertStore,
        archive: ImageArchive,
        register: Register,
        model_bytes: Callable[[int], bytes],
        active_model_id: Callable[[], str | None],
        threshold: float,
    ) -> None:
        self._alerts = alert_store
        self._archive = archive
        self._register = register
        self._model_bytes = model_bytes
        self._active_model_id = active_model_id
        self._threshold = threshold
        self._versions = 1
        self.gaussian_head = True  # False: the active model has a memory bank (no teaching defects)

    def with_images(self, alert_ids: list[str]) -> tuple[list[str], list[str]]:
        found: list[str] = []
        missing: list[str] = []
        for alert_id in alert_ids:
            (found if self._archive.find_by_alert(alert_id) is not None else missing).append(alert_id)
        return found, missing

    def learn(self, alert_ids: list[str], progress: ProgressFn) -> Learned:
        progress(0.1, "reading archived frames")
        taught = self._scores_of(alert_ids)
        _, good_items = self._archive.query(verdict="OK", limit=200)
        good = np.asarray([item.score for item in good_items])
        if len(good) < 2:
            raise TeachError(f"need at least 2 held-back good images, got {len(good)}")
        defects = self._scores_of(self._alerts.reviewed_ids("confirmed"))
        progress(0.6, "measuring the taught model")
        after = np.full(len(taught), float(np.median(good)))
        report = self._report(taught, after, good, defects)
        self._versions += 1
        data = self._model_bytes(self._versions)
        entry = self._register(data, "taught.onnx", hashlib.sha256(data).hexdigest(), report)
        progress(1.0, "done")
        return Learned(model_id=entry.id, parent_model_id=self._active_model_id(), report=report)

    def defects_refusal(self) -> str | None:
        if self.gaussian_head:
            return None
        return (
            f"the active model {self._active_model_id()} cannot be taught defects: that needs a "
            "per-position Gaussian head (model.head: gaussian, or auto on parts in a fixture); this model "
            "has a memory bank"
        )

    def learn_defects(self, alert_ids: list[str], check_ids: list[str], progress: ProgressFn) -> Learned:
        progress(0.1, "reading archived frames")
        taught, check = self._scores_of(alert_ids), self._scores_of(check_ids)
        _, good_items = self._archive.query(verdict="OK", limit=200)
        good = np.asarray([item.score for item in good_items])
        if len(good) < 2:
            raise TeachError(f"need at least 2 held-back good images, got {len(good)}")
        progress(0.5, "fitting the classifier")
        threshold = self._threshold
        rate_good = float((good >= threshold).mean())
        report = DefectTeachReport(
            parent_version=str(self._versions),
            model_version=f"{self._versions + 1}-defects",
            defects_taught=len(taught),
            defects_with_mask=0,
            positive_patches=4 * len(taught),
            negative_patches=100 * len(good),
            good_images_calibration=len(good) // 2,
            good_images_evaluation=len(good) - len(good) // 2,
            threshold=BeforeAfter(before=threshold, after=threshold),
            false_reject_rate_good=BeforeAfter(before=rate_good, after=rate_good),
            detection_rate_taught=BeforeAfter(before=float((taught >= threshold).mean()), after=1.0),
            detection_rate_check=(
                BeforeAfter(before=float((check >= threshold).mean()), after=1.0) if len(check) else None
            ),
            notes=["fake runtime: figures from the archived parts' scores"],
        )
        self._versions += 1
        data = self._model_bytes(self._versions)
        entry = self._register(data, "defects.onnx", hashlib.sha256(data).hexdigest(), teach_defects=report)
        progress(1.0, "done")
        return Learned(model_id=entry.id, parent_model_id=self._active_model_id(), report=report)

    def _scores_of(self, alert_ids: list[str]) -> np.ndarray:
        items = [self._archive.find_by_alert(alert_id) for alert_id in alert_ids]
        return np.asarray([item.score for item in items if item is not None])

    def _report(
        self, taught: np.ndarray, after: np.ndarray, good: np.ndarray, defects: np.ndarray
    ) -> TeachReport:
        threshold = self._threshold
        rate_good = float((good >= threshold).mean())
        detection = float((defects >= threshold).mean()) if len(defects) else None
        return TeachReport(
            parent_version=str(self._versions),
            model_version=str(self._versions + 1),
            taught_examples=len(taught),
            bank_entries_added=len(taught),
            bank_size_before=100,
            bank_size_after=100 + len(taught),
            uncovered_patches=0,
            good_images_calibration=0,
            good_images_evaluation=len(good),
            confirmed_defects=len(defects),
            threshold=BeforeAfter(before=threshold, after=threshold),
            threshold_recalibrated=False,
            false_reject_rate_good=BeforeAfter(before=rate_good, after=rate_good),
            false_reject_rate_taught=BeforeAfter(
                before=float((taught >= threshold).mean()), after=float((after >= threshold).mean())
            ),
            defect_auroc=None,
            defect_detection_rate=(
                BeforeAfter(before=detection, after=detection) if detection is not None else None
            ),
            notes=["fake runtime: figures from the archived parts' scores"],
        )
