"""Counters and latency windows of the running line, exposed to the API and as Prometheus metrics."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class RuntimeMetrics:
    """One registry per runtime so tests can run several runtimes in one process."""

    def __init__(self, window: int = 2000) -> None:
        self.registry = CollectorRegistry()
        self.frames_total = Counter("edgeinspect_frames", "Frames judged", registry=self.registry)
        self.defects_total = Counter("edgeinspect_defects", "Frames judged defective", registry=self.registry)
        self.corrupt_total = Counter(
            "edgeinspect_corrupt_frames", "Frames that could not be judged", registry=self.registry
        )
        self.capture_to_alert = Histogram(
            "edgeinspect_capture_to_decision_seconds",
            "Capture timestamp to decision (alert durably spooled for defects)",
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.inference = Histogram(
            "edgeinspect_inference_seconds",
            "Model run time",
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.gauges = {
            name: Gauge(f"edgeinspect_{name}", help_text, registry=self.registry)
            for name, help_text in {
                "fps": "Frames judged per second (recent)",
                "queue_depth": "Frames waiting between capture and inference",
                "dropped_frames": "Frames dropped because inference fell behind (total)",
                "spool_depth": "Messages waiting in the outbox",
                "spool_dropped": "Messages dropped because the outbox was full (total)",
                "broker_connected": "1 when the MQTT link is up",
                "camera_connected": "1 when the camera delivers frames",
                "threshold": "Active decision threshold",
            }.items()
        }
        self._lock = threading.Lock()
        self._latencies_ms: deque[float] = deque(maxlen=window)
        self._inference_ms: deque[float] = deque(maxlen=window)
        self._judged_at: deque[float] = deque(maxlen=300)
        self.frames = 0
        self.defects = 0
        self.corrupt = 0

    def record_frame(self, latency_ms: float, inference_ms: float, is_defect: bool) -> None:
        with self._lock:
            self.frames += 1
            self.defects += int(is_defect)
            self._latencies_ms.append(latency_ms)
            self._inference_ms.append(inference_ms)
            self._judged_at.append(time.monotonic())
        self.frames_total.inc()
        if is_defect:
            self.defects_total.inc()
        self.capture_to_alert.observe(latency_ms / 1000.0)
        self.inference.observe(inference_ms / 1000.0)

    def record_corrupt(self) -> None:
        with self._lock:
            self.corrupt += 1
        self.corrupt_total.inc()

    def fps(self, horizon_s: float = 5.0) -> float:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._judged_at if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        span = now - recent[0]
        return round((len(recent) - 1) / span, 2) if span > 0 else 0.0

    def latency_percentiles(self) -> dict[str, float | None]:
        with self._lock:
            lat = np.asarray(self._latencies_ms, dtype=np.float64)
            inf = np.asarray(self._inference_ms, dtype=np.float64)
        if lat.size == 0:
            return {"p50_ms": None, "p99_ms": None, "inference_p50_ms": None}
        return {
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "inference_p50_ms": round(float(np.percentile(inf, 50)), 2),
        }

    def restart_latency_window(self) -> None:
        """Forget recent latencies, e.g. after a warm-up, so percentiles describe the steady state."""
        with self._lock:
            self._latencies_ms.clear()
            self._inference_ms.clear()

    def latency_samples_ms(self) -> list[float]:
        with self._lock:
            return list(self._latencies_ms)

    def set_gauge(self, name: str, value: float) -> None:
        self.gauges[name].set(value)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
