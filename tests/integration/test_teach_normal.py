"""The operator's loop on a line with a recurring nuisance, through the real runtime and real HTTP.

Half of the good parts carry a paper label (`vision.data.stickers`) that the model, trained without labels,
flags as a defect. An operator reviews the alerts (labels: false alarm, real defects: confirmed), an admin
teaches the false alarms as normal; the candidate shows its figures and is not active until activated;
once activated, labelled parts the model never saw pass while real defects are still rejected; rollback
brings the old model back. Every part is archived (ok_sample_rate 1), which is also how the test reads
the verdict of each part: `GET /archive`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures_mqtt import wait_until
from unit.app.api_helpers import KEYS, headers
from unit.app.uvicorn_thread import serve

from app.api.main import create_app
from app.api.security import KeyStore
from app.settings import load_settings
from device.station.camera.simulator import SimulatorSource
from device.station.runtime import EdgeRuntime
from vision.data.stickers import paint_sticker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TAUGHT = 16  # false alarms reviewed and taught
LABELS = 4  # distinct label prints on the line; the first TAUGHT labelled parts carry all of them
LABEL_SEED = 5


@dataclass
class StickerLine:
    """The simulated camera with a label painted on every other good part; remembers what each frame was
    (frame ids are the capture order, from 0)."""

    inner: SimulatorSource
    name: str = "simulator+labels"
    kinds: list[str] = field(default_factory=list)

    def open(self) -> None:
        self.inner.open()

    def read(self) -> tuple[np.ndarray, dict[str, Any]]:
        image, truth = self.inner.read()
        kind = "defect" if truth["is_defect"] else "good"
        if kind == "good" and truth["part_index"] % 2 == 0:
            # A labeller printing one of LABELS product codes: each code looks the same on every part it
            # is on, so teaching the codes the operator reviewed frees the parts with those codes (BGR: the
            # label is grey-white either way).
            code = (truth["part_index"] // 2) % LABELS
            image = paint_sticker(image, np.random.default_rng(LABEL_SEED + code), "fixed")
            kind = "label"
        self.kinds.append(kind)
        return image, truth

    def interrupt(self) -> None:
        self.inner.interrupt()

    def close(self) -> None:
        self.inner.close()

    def frames(self, kind: str, after: int = -1) -> set[int]:
        return {i for i, k in enumerate(list(self.kinds)) if k == kind and i > after}


@dataclass
class Line:
    runtime: EdgeRuntime
    source: StickerLine
    http: httpx.Client


@pytest.fixture
def line(tmp_path: Path, trained_model: Path, mosquitto: Any) -> Iterator[Line]:
    settings = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "camera": {"category": "bracket", "fps": 8, "queue_size": 64},
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-teach"},
            "archive": {"ok_sample_rate": 1.0},
            "teach": {"min_good_images": 20, "max_good_images": 40},
            "auth": {"audit_path": str(tmp_path / "audit.sqlite3")},
        },
    )
    source = StickerLine(SimulatorSource("bracket", seed=3, defect_rate=0.15, image_size=256, fps=8))
    runtime = EdgeRuntime(settings, source=source)
    runtime.start()
    try:
        app = create_app(runtime, settings, KeyStore.from_keys(KEYS))
        with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
            yield Line(runtime, source, http)
    finally:
        runtime.stop()


def _archived(line: Line, after: int = -1) -> dict[int, dict[str, Any]]:
    """Every archived part (all of them: ok_sample_rate 1) newer than frame `after`, by frame id."""
    parts: dict[int, dict[str, Any]] = {}
    offset = 0
    while True:
        page = line.http.get("/archive", params={"limit": 500, "offset": offset}, headers=headers("viewer"))
        items = page.json()["items"]
        parts.update({i["frame_id"]: i for i in items if i["frame_id"] > after})
        offset += len(items)
        if not items or offset >= page.json()["total"]:
            return parts


def _reject_rate(parts: dict[int, dict[str, Any]], frames: set[int]) -> tuple[float, int]:
    judged = [parts[f]["verdict"] == "NG" for f in frames if f in parts]
    return (float(np.mean(judged)) if judged else float("nan")), len(judged)


def _alerts(line: Line) -> list[dict[str, Any]]:
    page = line.http.get("/alerts", params={"limit": 500}, headers=headers("viewer"))
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def test_teach_normal_loop_on_a_line_with_a_recurring_label(line: Line) -> None:
    http, source = line.http, line.source

    def enough_evidence() -> bool:
        labelled = {a["frame_id"] for a in _alerts(line)} & source.frames("label")
        return len(labelled) >= TAUGHT + 2 and len(_archived(line)) >= 80

    wait_until(enough_evidence, timeout_s=120, what="label alerts and archived parts")
    before = _archived(line)
    label_frr_before, label_count = _reject_rate(before, source.frames("label"))
    assert label_frr_before >= 0.9 and label_count >= TAUGHT  # the untaught model rejects labelled parts

    # The operator reviews: labels are false alarms, real defects confirmed.
    alerts = _alerts(line)
    labelled = [a for a in alerts if a["frame_id"] in source.frames("label")][:TAUGHT]
    defects = [a for a in alerts if a["frame_id"] in source.frames("defect")]
    for alert in labelled:
        body = {"state": "false_alarm", "comment": "paper label, part is fine"}
        response = http.post(f"/alerts/{alert['alert_id']}/review", json=body, headers=headers("operator"))
        assert response.status_code == 200, response.text
    for alert in defects:
        body = {"state": "confirmed"}
        assert http.post(
            f"/alerts/{alert['alert_id']}/review", json=body, headers=headers("operator")
        ).is_success
    summary = http.get("/alerts/reviews/summary", headers=headers("viewer")).json()
    assert summary["false_alarm"] == TAUGHT and summary["confirmed"] == len(defects)

    # Only an admin may teach.
    for role in ("viewer", "operator"):
        assert http.post("/models/teach-normal", json={}, headers=headers(role)).status_code == 403
    parent = http.get("/status", headers=headers("viewer")).json()["model"]["id"]
    started = http.post("/models/teach-normal", json={}, headers=headers("admin"))
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    seen_progress: set[float] = set()

    def finished() -> bool:
        job = http.get(f"/models/teach-normal/{job_id}", headers=headers("viewer")).json()
        seen_progress.add(job["progress"])
        return job["state"] in ("done", "failed")

    wait_until(finished, timeout_s=300, what="teach job")
    job = http.get(f"/models/teach-normal/{job_id}", headers=headers("viewer")).json()
    assert job["state"] == "done", job
    assert any(0.0 < p < 1.0 for p in seen_progress)  # progress was shown while it ran
    report, candidate = job["report"], job["model_id"]
    assert report["taught_examples"] == TAUGHT and report["confirmed_defects"] == len(defects)
    assert report["false_reject_rate_taught"] == {"before": 1.0, "after": 0.0}
    assert report["false_reject_rate_good"] is not None and report["good_images_evaluation"] >= 10
    assert report["defect_detection_rate"]["after"] == 1.0

    # Registered with its figures, not active until an admin activates it.
    models = {m["id"]: m for m in http.get("/models", headers=headers("viewer")).json()}
    assert models[candidate]["teach"] == report and not models[candidate]["active"]
    assert http.get("/status", headers=headers("viewer")).json()["model"]["id"] == parent
    activated = http.post(f"/models/{candidate}/activate", headers=headers("admin"))
    assert activated.status_code == 200 and activated.json()["new_value"] == candidate
    boundary = max(_archived(line)) + 64  # every frame after this was judged by the candidate

    # Labelled parts it never saw now pass; real defects are still rejected.
    def after_evidence() -> bool:
        parts = _archived(line, after=boundary)
        return _reject_rate(parts, source.frames("label", boundary))[1] >= 20 and (
            _reject_rate(parts, source.frames("defect", boundary))[1] >= 4
        )

    wait_until(after_evidence, timeout_s=180, what="labelled and defective parts judged by the candidate")
    after = _archived(line, after=boundary)
    label_frr_after, _ = _reject_rate(after, source.frames("label", boundary))
    defect_rate_after, _ = _reject_rate(after, source.frames("defect", boundary))
    good_frr_after, _ = _reject_rate(after, source.frames("good", boundary))
    # Every label code was among the taught false alarms, so the unseen parts carrying them pass (0 of
    # them rejected in the runs of 2026-12-07; a single unlucky draw of varied labels had made the old bar,
    # "30 points fewer", fail). The bar leaves room for a part that sits far off in the fixture.
    assert label_frr_after <= 0.2, (label_frr_before, label_frr_after)
    assert defect_rate_after >= 0.75 and good_frr_after <= 0.1

    # One click back.
    rolled = http.post("/models/rollback", headers=headers("admin"))
    assert rolled.status_code == 200 and rolled.json()["new_value"] == parent
    assert http.get("/status", headers=headers("viewer")).json()["model"]["id"] == parent
    audit = http.get("/audit", params={"limit": 200}, headers=headers("admin")).json()["items"]
    actions = {(e["action"], e["ok"]) for e in audit}
    assert {("review_alert", True), ("teach_normal", True), ("teach_normal_done", True)} <= actions
    assert {("activate_model", True), ("rollback_model", True)} <= actions
    csv_text = http.get("/alerts/reviews/export.csv", headers=headers("viewer")).text
    assert csv_text.count("false_alarm") == TAUGHT and candidate in csv_text
