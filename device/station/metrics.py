"""Counters and latency windows of the running line, exposed to the API and as Prometheus metrics."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

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


_VERIFIER_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class EscalationMetrics:
    """Escalations to plant verifiers (`device.station.escalation`): counts for status, Prometheus series."""

    def __init__(self, registry: CollectorRegistry, window: int = 2000) -> None:
        self.escalations_total = Counter(
            "edgeinspect_escalations", "Parts escalated to a plant verifier", registry=registry
        )
        self.decisions_total = Counter(
            "edgeinspect_decisions",
            "Final decisions by who made them (edge, verifier, fallback)",
            ["decided_by"],
            registry=registry,
        )
        self.fallbacks_total = Counter(
            "edgeinspect_escalation_fallbacks",
            "Escalated parts decided by the edge after all, by reason",
            ["reason"],
            registry=registry,
        )
        self.verifier_latency = Histogram(
            "edgeinspect_verifier_round_trip_seconds",
            "Request published to answer received, at the station",
            buckets=_VERIFIER_BUCKETS_S,
            registry=registry,
        )
        self.rate_gauge = Gauge(
            "edgeinspect_escalation_rate", "Escalated share of judged parts (since start)", registry=registry
        )
        self.agreement_gauge = Gauge(
            "edgeinspect_verifier_agreement",
            "Share of verifier answers that agreed with the edge verdict (since start)",
            registry=registry,
        )
        self._lock = threading.Lock()
        self._round_trips_ms: deque[float] = deque(maxlen=window)
        self.judged = 0
        self.escalated = 0
        self.verified = 0
        self.agreed = 0
        self.late_answers = 0
        self.held_max_ms = 0.0
        self.fallbacks: dict[str, int] = {}

    def record_judged(self, escalated: bool) -> None:
        with self._lock:
            self.judged += 1
            self.escalated += int(escalated)
            rate = self.escalated / self.judged
        if escalated:
            self.escalations_total.inc()
        else:
            self.decisions_total.labels(decided_by="edge").inc()
        self.rate_gauge.set(rate)

    def record_verdict(self, round_trip_ms: float, agreed: bool) -> None:
        with self._lock:
            self.verified += 1
            self.agreed += int(agreed)
            self._round_trips_ms.append(round_trip_ms)
            agreement = self.agreed / self.verified
        self.decisions_total.labels(decided_by="verifier").inc()
        self.verifier_latency.observe(round_trip_ms / 1000.0)
        self.agreement_gauge.set(agreement)

    def record_fallback(self, reason: str) -> None:
        with self._lock:
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        self.decisions_total.labels(decided_by="fallback").inc()
        self.fallbacks_total.labels(reason=reason).inc()

    def record_held(self, held_ms: float) -> None:
        """How long the line held one escalated decision (the deadline bounds it)."""
        with self._lock:
            self.held_max_ms = max(self.held_max_ms, held_ms)

    def record_late_answer(self) -> None:
        with self._lock:
            self.late_answers += 1

    def summary(self) -> dict[str, Any]:
        """Counts, rates and round-trip percentiles for `status()`."""
        with self._lock:
            trips = np.asarray(self._round_trips_ms, dtype=np.float64)
            counts = {
                "judged": self.judged,
                "escalated": self.escalated,
                "verified": self.verified,
                "late_answers": self.late_answers,
                "held_max_ms": round(self.held_max_ms, 3),
                "fallbacks": dict(self.fallbacks),
                "escalation_rate": self.escalated / self.judged if self.judged else None,
                "agreement": self.agreed / self.verified if self.verified else None,
            }
        has = trips.size > 0
        counts["verifier_p50_ms"] = round(float(np.percentile(trips, 50)), 2) if has else None
        counts["verifier_p99_ms"] = round(float(np.percentile(trips, 99)), 2) if has else None
        return counts
