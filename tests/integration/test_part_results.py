"""A result for every part (`mqtt.publish_results`): a PLC can keep its FIFO of decisions and spot a gap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_mqtt import MessageCollector

from app.settings import load_settings
from device.station.runtime import EdgeRuntime

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_judged_part_gets_a_result_and_ng_parts_match_the_alerts(
    tmp_path: Path, trained_model: Path, mosquitto: Any
) -> None:
    settings = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "camera": {"category": "bracket", "fps": 12, "defect_rate": 0.4, "queue_size": 64},
            "model": {"path": str(trained_model), "auto_build": False},
            "reject": {"encoder_counts_per_frame": 250},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-results", "publish_results": True},
        },
    )
    results_topic = "edgeinspect/line1/station1/result"
    alerts_topic = "edgeinspect/line1/station1/alert"
    with MessageCollector(mosquitto.url, [results_topic, alerts_topic]) as collector:
        runtime = EdgeRuntime(settings)
        runtime.start()
        try:
            collector.wait_for(lambda got: len(got) >= 30, 60, topic=results_topic)
        finally:
            runtime.stop()
        results = [json.loads(m.payload) for m in collector.snapshot(results_topic)]
        alerts = {json.loads(m.payload)["frame_id"] for m in collector.snapshot(alerts_topic)}

    frame_ids = [r["frame_id"] for r in results]
    assert frame_ids == sorted(frame_ids) and len(set(frame_ids)) == len(frame_ids)
    assert {r["verdict"] for r in results} == {"OK", "NG"}
    for result in results:
        assert result["schema_version"] == 1 and result["station_id"] == "station1"
        assert result["encoder_position"] == result["frame_id"] * 250
        assert (result["verdict"] == "NG") == (result["score"] > result["threshold"])
        assert (result["defect_class"] is None) == (result["verdict"] == "OK")
    ng = {r["frame_id"] for r in results if r["verdict"] == "NG"}
    assert ng <= alerts  # every NG result was also raised as an alert
    assert runtime.metrics.frames >= len(results)
