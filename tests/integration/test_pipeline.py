"""The walking skeleton end to end: simulated camera -> ONNX model -> decision -> outbox -> real Mosquitto.

Every defective part must produce an alert with its frame id; good parts may raise at most a small
tolerance of false alerts. Ground truth comes from replaying the simulator with the same seed: the capture
worker numbers frames in the order the simulator produced them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fixtures_mqtt import MessageCollector

from app.settings import load_settings
from device.station.commands import StopLine
from device.station.runtime import EdgeRuntime
from vision.data.synthetic import LineSimulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_FRAMES = 240
SEED = 4242
DEFECT_RATE = 0.2
FALSE_ALERT_TOLERANCE = 0.03  # share of good parts


def test_every_defective_part_raises_an_alert(tmp_path: Path, trained_model: Path, mosquitto) -> None:
    settings = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "line": {"line_id": "lineA", "station_id": "cam1"},
            "camera": {
                "category": "bracket",
                "fps": 25,
                "defect_rate": DEFECT_RATE,
                "seed": SEED,
                "queue_size": 1000,
            },
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edgeinspect-pipeline-test"},
        },
    )
    runtime = EdgeRuntime(settings)
    collector = MessageCollector(mosquitto.url, [runtime.topics.alert]).start()
    try:
        runtime.start()
        deadline = time.monotonic() + 120
        while runtime.metrics.frames < N_FRAMES and time.monotonic() < deadline:
            time.sleep(0.1)
        runtime.execute(StopLine(), actor="test")
        judged = runtime.metrics.frames
        assert judged >= N_FRAMES, f"only {judged} frames judged in time"
        assert runtime.queue.dropped == 0
        deadline = time.monotonic() + 20
        while runtime.outbox.depth() > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.outbox.depth() == 0, "alerts still spooled: broker did not acknowledge them"
        time.sleep(0.5)
        status = runtime.status()
    finally:
        runtime.stop()
        collector.stop()

    alerts = [json.loads(m.payload) for m in collector.snapshot()]
    simulator = LineSimulator("bracket", seed=SEED, defect_rate=DEFECT_RATE, image_size=256)
    truth = [simulator.next_part().defect_type is not None for _ in range(judged)]
    defective = {i for i, bad in enumerate(truth) if bad}
    alerted = {a["frame_id"] for a in alerts if a["frame_id"] < judged}

    assert len(defective) >= 0.1 * judged
    missed = sorted(defective - alerted)
    assert not missed, f"defective parts without an alert: {missed}"
    false_alerts = alerted - defective
    assert len(false_alerts) <= FALSE_ALERT_TOLERANCE * (judged - len(defective)), sorted(false_alerts)
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids))
    first = alerts[0]
    assert first["is_defect"] is True and first["score"] >= first["threshold"]
    assert first["model"]["sha256"] == status.model.sha256
    assert first["line_id"] == "lineA" and first["station_id"] == "cam1"
    assert first["ts"].endswith("Z")
    assert status.defects == len([a for a in alerts])
