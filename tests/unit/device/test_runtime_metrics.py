"""Runtime metrics: counters, percentiles and the Prometheus exposition."""

from __future__ import annotations

from device.station.metrics import RuntimeMetrics


def test_percentiles_and_counters() -> None:
    metrics = RuntimeMetrics()
    assert metrics.latency_percentiles()["p50_ms"] is None
    for i in range(1, 101):
        metrics.record_frame(latency_ms=float(i), inference_ms=2.0, is_defect=i % 10 == 0)
    pct = metrics.latency_percentiles()
    assert 49 <= pct["p50_ms"] <= 51
    assert pct["p99_ms"] >= 99
    assert metrics.frames == 100 and metrics.defects == 10


def test_prometheus_exposition_has_our_series() -> None:
    metrics = RuntimeMetrics()
    metrics.record_frame(20.0, 10.0, True)
    metrics.record_corrupt()
    metrics.set_gauge("spool_depth", 7)
    text = metrics.exposition().decode()
    assert "edgeinspect_frames_total 1.0" in text
    assert "edgeinspect_defects_total 1.0" in text
    assert "edgeinspect_corrupt_frames_total 1.0" in text
    assert "edgeinspect_spool_depth 7.0" in text
    assert 'edgeinspect_capture_to_decision_seconds_bucket{le="0.03"} 1.0' in text
