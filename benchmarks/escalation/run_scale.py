"""Escalation at plant scale: K simulated stations, V real `edgeinspect verify` processes, one real Mosquitto.

    .venv/bin/python benchmarks/escalation/run_scale.py [--seconds 15] [--stations 10 20 40] \
        [--verifiers 1 2 4] [--modes line overload]

Stations run the real station-side code (`device.station.escalation.client.EscalationClient`: band, JPEG
request,
deadline, breaker, fallback), one thread and one MQTT connection each, in this process. Each replays a pool
of pre-rendered simulator frames whose edge verdicts a small edge model computed once (a real camera and
edge model cost the plant's servers nothing). Two modes:

- `line`: 10 parts/s per station; the band, calibrated on the station's own recent scores, escalates 5%.
- `overload`: every part escalates, 30 parts/s per station; a station waits for each decision, so it sends
  as fast as the answers (or the deadline) allow, up to its camera rate. The breaker is off here (it would
  stop asking after 3 timeouts and hide the verifiers' capacity); `line` keeps the shipped breaker.

Verifiers are real `python -m app.cli verify` processes (one ONNX Runtime thread each) in one shared-
subscription group, restarted for every configuration so counters and queues start empty. A wire observer
(a plain, non-shared subscriber to the request and response topics) audits that nothing is lost or
duplicated. Models are built once and cached in benchmarks/escalation/work (git-ignored). Writes
benchmarks/escalation/scale/results.{json,md} and scale.png.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from device.config import EscalationSettings, MqttSettings  # noqa: E402
from device.mqtt_client import create_client  # noqa: E402
from device.station.broker import MosquittoBroker  # noqa: E402
from device.station.camera.base import Frame  # noqa: E402
from device.station.escalation.client import EscalationClient  # noqa: E402
from device.station.metrics import EscalationMetrics  # noqa: E402
from device.station.topics import Topics  # noqa: E402
from device.wire.escalation import (  # noqa: E402
    ProtocolError,
    decode_request,
    decode_response,
    request_topic,
)
from vision.inspector import Inspector  # noqa: E402
from vision.types import InspectionResult  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
OUT = HERE / "scale"
PREFIX = "bench"
GROUP = "bench-verifiers"
PUBLISHING_REASONS = {"timeout", "verifier_error"}  # fallbacks whose request did go out
MODEL_SETTINGS = {  # edge: weaker and cheaper; verifier: more training images, a larger memory bank
    "edge": {"train_images": 16, "memory_bank_size": 128},
    "verifier": {"train_images": 60, "memory_bank_size": 1024},
}


# ------------------------------------------------------------------------------------------ models, frames


def build_models(category: str) -> dict[str, Path]:
    """The edge and verifier ONNX models, built once (about a minute) the way a first run builds one."""
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    paths = {}
    for name, settings in MODEL_SETTINGS.items():
        path = WORK / f"{category}-{name}.onnx"
        if not path.exists():
            print(f"[scale] building the {name} model ({settings})", flush=True)
            build_default_model(category, ModelSettings(**settings), path, progress=False)
        paths[name] = path
    return paths


@dataclass(frozen=True)
class Part:
    image: np.ndarray  # BGR, as a camera delivers it
    is_defect: bool  # ground truth from the simulator
    edge: InspectionResult  # the edge model's verdict (anomaly map dropped: the client never reads it)


def make_pool(category: str, edge_model: Path, count: int, defect_rate: float, seed: int) -> list[Part]:
    from vision.data.synthetic import LineSimulator

    simulator = LineSimulator(category, seed=seed, defect_rate=defect_rate)
    inspector = Inspector(edge_model, threads=2)
    pool = []
    for _ in range(count):
        part = simulator.next_part()
        image = cv2.cvtColor(part.image, cv2.COLOR_RGB2BGR)
        result = replace(inspector.inspect(image), anomaly_map=np.zeros((1, 1), np.float32))
        pool.append(Part(image, part.defect_type is not None, result))
    return pool


# ---------------------------------------------------------------------------------------------- stations


def escalation_settings(mode: str, deadline_ms: int) -> EscalationSettings:
    """`line`: the shipped band (5%) and breaker; `overload`: a band wider than any score, so every part
    escalates, and no breaker, so every part is sent."""
    common: dict[str, Any] = {"enabled": True, "group": GROUP, "deadline_ms": deadline_ms}
    if mode == "overload":
        wide = {"initial_width": 5.0, "min_width": 5.0, "max_width": 10.0}
        return EscalationSettings(**common, **wide, breaker_failures=1000)
    return EscalationSettings(**common, target_rate=0.05)


@dataclass(frozen=True)
class Outcome:
    """One escalated part: who decided, how long the line held it, and what the verifier said."""

    station: int
    decided_by: str
    reason: str | None
    held_ms: float
    request_id: str | None
    verifier_id: str | None
    edge_is_defect: bool
    final_is_defect: bool
    truth: bool


@dataclass
class Station:
    """One simulated station: a real EscalationClient fed replayed parts at the line rate (or flat out)."""

    index: int
    url: str
    settings: EscalationSettings
    pool: list[Part]
    rate_hz: float
    judged: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        topics = Topics(PREFIX, "line1", f"st{self.index:03d}")
        mqtt_settings = MqttSettings(url=self.url, client_id=f"bench-st{self.index:03d}", reconnect_max_s=1.0)
        self.metrics = EscalationMetrics(CollectorRegistry())
        self.client = EscalationClient(mqtt_settings, self.settings, topics, self.metrics)
        self.offset = (self.index * 37) % len(self.pool)

    def prewarm_band(self) -> None:
        """A station that has been running: its band already holds `window` recent scores."""
        for n in range(self.settings.window):
            edge = self.pool[(self.offset + n) % len(self.pool)].edge
            self.client.band.observe(edge.score, edge.threshold)

    def run(self, start_mono: float, end_mono: float) -> None:
        period = 1.0 / self.rate_hz
        due = start_mono + (self.index % 10) * period / 10.0  # stations are not in lock step
        n = 0
        while True:
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            if time.monotonic() >= end_mono:
                return
            self._judge(n, self.pool[(self.offset + n) % len(self.pool)])
            n += 1
            due += period

    def _judge(self, n: int, part: Part) -> None:
        frame = Frame(frame_id=n, captured_at=time.time(), captured_mono=time.monotonic(), image=part.image)
        final, decision = self.client.decide(frame, part.edge, "edge@bench", None)
        self.judged += 1
        if decision.decided_by == "edge":
            return
        answer = decision.verifier
        self.outcomes.append(
            Outcome(
                station=self.index,
                decided_by=decision.decided_by,
                reason=decision.fallback_reason,
                held_ms=float(decision.held_ms or 0.0),
                request_id=answer.request_id if answer else None,
                verifier_id=answer.verifier_id if answer else None,
                edge_is_defect=part.edge.is_defect,
                final_is_defect=final.is_defect,
                truth=part.is_defect,
            )
        )


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------- wire audit


class WireObserver:
    """A plain (non-shared) subscriber to every request and answer: what actually crossed the broker."""

    def __init__(self, url: str) -> None:
        settings = MqttSettings(url=url, client_id="bench-wire-observer")
        self.client, self._kwargs = create_client(settings, "bench-wire-observer", persistent=False)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.ready.set()
        self.client.on_message = self._on_message
        self.ready = threading.Event()
        self.requests: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.answers_by: Counter[str] = Counter()
        self.unreadable = 0

    def start(self) -> WireObserver:
        self.client.connect_async(**self._kwargs)
        self.client.loop_start()
        if not self.ready.wait(15):
            raise TimeoutError("wire observer did not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, code: Any, props: Any) -> None:
        client.subscribe([(request_topic(PREFIX), 0), (f"{PREFIX}/+/+/verify/response", 0)])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            if message.topic == request_topic(PREFIX):
                header, _ = decode_request(bytes(message.payload), 64_000_000)
                self.requests[header.request_id] += 1
                return
            answer = decode_response(bytes(message.payload))
        except ProtocolError:
            self.unreadable += 1
            return
        correlation = getattr(message.properties, "CorrelationData", None)
        self.responses[correlation.decode() if correlation else answer.request_id] += 1
        self.answers_by[answer.verifier_id] += 1


# -------------------------------------------------------------------------------------------- verifiers


@dataclass
class VerifierProcess:
    verifier_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> dict[str, int]:
        """SIGTERM (finish the request in hand, leave the group) and the counters it logs on the way out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        found = re.findall(r"stopped: (\{[^}]*\})", self.log())
        return ast.literal_eval(found[-1]) if found else {}


def start_verifiers(count: int, url: str, model: Path, threads: int, run_dir: Path) -> list[VerifierProcess]:
    config = run_dir / "verify.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"url": url, "reconnect_max_s": 1.0, "topic_prefix": PREFIX},
                "escalation": {"group": GROUP},
            }
        )
    )
    started = []
    for i in range(count):
        log_path = run_dir / f"verifier-{i}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "app.cli", "verify", "--config", str(config)),
                    *("--model", str(model), "--id", f"v{i}", "--threads", str(threads)),
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(VerifierProcess(f"v{i}", process, log_path))
    for verifier in started:
        wait_until(lambda v=verifier: "subscribed to" in v.log(), 90, f"verifier {verifier.verifier_id}")
    return started


def warm_up(url: str, pool: list[Part], verifiers: int) -> int:
    """A few escalations with a long deadline so every verifier has run its model once; answers count."""
    station = Station(999, url, escalation_settings("overload", 5000), pool, 100.0)
    station.client.start()
    try:
        wait_until(lambda: station.client.connected, 15, "warm-up connection")
        for n in range(3 * verifiers):
            station._judge(n, pool[n % len(pool)])
    finally:
        station.client.stop()
    return sum(o.decided_by == "verifier" for o in station.outcomes)


# --------------------------------------------------------------------------------------- one configuration


@dataclass(frozen=True)
class Config:
    stations: int
    verifiers: int
    mode: str  # "line" or "overload"

    @property
    def name(self) -> str:
        return f"{self.mode} K={self.stations} V={self.verifiers}"


def run_config(
    config: Config, url: str, models: dict[str, Path], pool: list[Part], args: argparse.Namespace
) -> dict[str, Any]:
    run_dir = WORK / "runs" / config.name.replace(" ", "_").replace("=", "")
    run_dir.mkdir(parents=True, exist_ok=True)
    verifiers = start_verifiers(config.verifiers, url, models["verifier"], args.verifier_threads, run_dir)
    counters: dict[str, dict[str, int]] = {}
    cpu_start = (time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN))
    try:
        warm_answers = warm_up(url, pool, config.verifiers)
        observer = WireObserver(url).start()
        stations = [
            Station(
                i,
                url,
                escalation_settings(config.mode, args.deadline_ms),
                pool,
                args.overload_fps if config.mode == "overload" else args.parts_per_s,
            )
            for i in range(config.stations)
        ]
        for station in stations:
            station.prewarm_band()
            station.client.start()
        wait_until(lambda: all(s.client.connected for s in stations), 30, "station connections")
        load_start = os.getloadavg()
        start = time.monotonic() + 0.2
        threads = [
            threading.Thread(target=s.run, args=(start, start + args.seconds), daemon=True) for s in stations
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.monotonic() - start
        load_end = os.getloadavg()
        time.sleep(1.0)  # answers still on the way are counted as late, not lost
        for station in stations:
            station.client.stop()
    finally:
        for verifier in verifiers:
            counters[verifier.verifier_id] = verifier.stop()
    observer.stop()
    result = summarise(config, stations, observer, counters, warm_answers, wall_s)
    result["load_average"] = {"start": list(load_start), "end": list(load_end)}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_s"] = {  # whole configuration incl. start-up and warm-up; verifiers = reaped children
        "stations_process": round(time.process_time() - cpu_start[0], 1),
        "verifiers": round(
            children.ru_utime + children.ru_stime - cpu_start[1].ru_utime - cpu_start[1].ru_stime, 1
        ),
    }
    return result


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def summarise(
    config: Config,
    stations: list[Station],
    observer: WireObserver,
    counters: dict[str, dict[str, int]],
    warm_answers: int,
    wall_s: float,
) -> dict[str, Any]:
    outcomes = [o for s in stations for o in s.outcomes]
    answered = [o for o in outcomes if o.decided_by == "verifier"]
    reasons = Counter(o.reason for o in outcomes if o.decided_by == "fallback")
    held = [o.held_ms for o in outcomes]
    held_answered = [o.held_ms for o in answered]
    judged = sum(s.judged for s in stations)
    return {
        "config": {"stations": config.stations, "verifiers": config.verifiers, "mode": config.mode},
        "wall_s": round(wall_s, 2),
        "judged": judged,
        "escalated": len(outcomes),
        "escalation_rate": round(len(outcomes) / judged, 4) if judged else None,
        "offered_per_s": round(len(outcomes) / wall_s, 2),
        "sent_per_s": round(len(observer.requests) / wall_s, 2),
        "served_per_s": round(len(answered) / wall_s, 2),
        "answered": len(answered),
        "answered_share": round(len(answered) / len(outcomes), 4) if outcomes else None,
        "fallbacks": dict(reasons),
        "decision_p50_ms": _percentile(held, 50),
        "decision_p99_ms": _percentile(held, 99),
        "decision_max_ms": round(max(held), 1) if held else None,
        "answered_p50_ms": _percentile(held_answered, 50),
        "answered_p99_ms": _percentile(held_answered, 99),
        "agreement_with_edge": (
            round(sum(o.final_is_defect == o.edge_is_defect for o in answered) / len(answered), 4)
            if answered
            else None
        ),
        "correct_on_escalated": {
            "edge": round(sum(o.edge_is_defect == o.truth for o in outcomes) / len(outcomes), 4)
            if outcomes
            else None,
            "final": round(sum(o.final_is_defect == o.truth for o in outcomes) / len(outcomes), 4)
            if outcomes
            else None,
        },
        "answers_by_verifier": dict(Counter(o.verifier_id for o in answered)),
        "verifier_counters": counters,
        "audit": audit(stations, outcomes, answered, observer, counters, warm_answers),
    }


def audit(
    stations: list[Station],
    outcomes: list[Outcome],
    answered: list[Outcome],
    observer: WireObserver,
    counters: dict[str, dict[str, int]],
    warm_answers: int,
) -> dict[str, Any]:
    """Nothing lost: every escalated part has exactly one outcome, every request went out once and got at
    most one answer, and the station's own counters say the same."""
    metric_escalated = sum(s.metrics.escalated for s in stations)
    metric_outcomes = sum(s.metrics.verified + sum(s.metrics.fallbacks.values()) for s in stations)
    published = len(answered) + sum(o.reason in PUBLISHING_REASONS for o in outcomes)
    answer_ids = [o.request_id for o in answered]
    on_wire = len(observer.requests)
    handled = sum(
        sum(c.get(k, 0) for k in ("served", "expired", "errors", "busy")) for c in counters.values()
    )
    checks = {
        "one_outcome_per_escalation": metric_escalated == len(outcomes) == metric_outcomes,
        "no_duplicate_decisions": len(answer_ids) == len(set(answer_ids)),
        "every_answer_matches_a_request": all(observer.requests.get(i or "") == 1 for i in answer_ids),
        "published_equals_on_wire": published == on_wire,
        "no_duplicate_requests": all(n == 1 for n in observer.requests.values()),
        "no_duplicate_answers": all(n == 1 for n in observer.responses.values()),
        "no_answer_without_request": set(observer.responses) <= set(observer.requests),
    }
    return {
        "nothing_lost": all(checks.values()),
        "checks": checks,
        "requests_on_wire": on_wire,
        "answers_on_wire": sum(observer.responses.values()),
        "late_answers": sum(s.metrics.late_answers for s in stations),
        "unreadable_on_wire": observer.unreadable,
        "verifiers_handled": handled - warm_answers,
        "left_unhandled_at_stop": on_wire - (handled - warm_answers),
    }


# ------------------------------------------------------------------------------------------------ report


def throughput_ratios(rows: list[dict[str, Any]]) -> None:
    """Served/s relative to one verifier, same mode and station count (in place)."""
    base = {
        (r["config"]["mode"], r["config"]["stations"]): r["served_per_s"]
        for r in rows
        if r["config"]["verifiers"] == 1
    }
    for row in rows:
        one = base.get((row["config"]["mode"], row["config"]["stations"]))
        row["served_vs_1_verifier"] = round(row["served_per_s"] / one, 2) if one else None


def _fmt(value: Any, pattern: str = "{}") -> str:
    return "–" if value is None else pattern.format(value)


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# Escalation at plant scale",
        "",
        f"{env['machine']}; 1-minute load average {env['load_average_start'][0]:.1f} at start, "
        f"{env['load_average_end'][0]:.1f} at end (other work shares this box). **This box has "
        f"{env['cpus']} cores**: stations, broker and every verifier share them, so 4 verifiers cannot scale "
        f"beyond ~2x one verifier here; on real plant servers each verifier brings its own cores.",
        "",
        f"Deadline {results['deadline_ms']} ms, breaker {results['breaker']} (`line` only); "
        f"{results['seconds']} s per "
        f"configuration; verifier model `{results['models']['verifier']}` with {results['verifier_threads']} "
        f"ONNX thread(s) per process; {results['pool']['frames']} simulator frames "
        f"({results['pool']['category']}, JPEG ~{results['pool']['jpeg_kb']:.0f} KB), edge verdicts from "
        f"`{results['models']['edge']}`. `line`: {results['parts_per_s']} parts/s per station, band "
        f"calibrated to escalate 5%; `overload`: every part escalates, {results['overload_fps']:g} parts/s "
        "per station, each waiting for its decision (a station sends as fast as answers or the deadline "
        "allow; breaker off, so every part is sent).",
        "",
        "| mode | stations | verifiers | escalated/s | sent/s | served/s | vs 1 verifier | answered "
        "| fallbacks | decision p50 / p99 ms | answered p50 / p99 ms | agreement with edge | nothing lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        c = r["config"]
        fallbacks = ", ".join(f"{k} {v}" for k, v in sorted(r["fallbacks"].items())) or "0"
        lines.append(
            f"| {c['mode']} | {c['stations']} | {c['verifiers']} | {r['offered_per_s']:.1f} | "
            f"{r['sent_per_s']:.1f} | {r['served_per_s']:.1f} | "
            f"{_fmt(r['served_vs_1_verifier'], '{:.2f}x')} | "
            f"{_fmt(r['answered_share'], '{:.1%}')} | {fallbacks} | "
            f"{_fmt(r['decision_p50_ms'])} / {_fmt(r['decision_p99_ms'])} | "
            f"{_fmt(r['answered_p50_ms'])} / {_fmt(r['answered_p99_ms'])} | "
            f"{_fmt(r['agreement_with_edge'], '{:.1%}')} | "
            f"{'yes' if r['audit']['nothing_lost'] else 'NO'} |"
        )
    lines += [
        "",
        "Decision latency: escalation to answer, or to the fallback (deadline, or at once while the breaker "
        "is open); answered: the same for the parts a verifier decided. JPEG quality "
        f"{results['jpeg_quality']} (`escalation.jpeg_quality`). "
        '"Nothing lost": every escalated part got exactly one outcome (the station\'s counters '
        "agree), every request crossed the broker once, no request got two answers, no answer came without "
        "a request (wire observer); requests the verifiers never handled (expired at the broker or queued "
        "at shutdown) were each counted by the station as a `timeout` fallback. Agreement is a plumbing "
        "check here: on the synthetic line both small models are near-perfect, the escalated parts are the "
        "good parts nearest the edge threshold, and this verifier is no better on them; whether a verifier "
        "improves accuracy is the hybrid benchmark's question. Per-configuration audit, verifier counters, "
        "CPU seconds and load averages: `results.json`.",
    ]
    if (HERE / "scale" / "scale.png").exists():
        lines += ["", "![served per second vs verifiers](escalation/scale/scale.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, axis in zip(("overload", "line"), axes, strict=True):
        for stations in sorted({r["config"]["stations"] for r in rows}):
            mine = sorted(
                (r for r in rows if r["config"]["mode"] == mode and r["config"]["stations"] == stations),
                key=lambda r: r["config"]["verifiers"],
            )
            if mine:
                axis.plot(
                    [r["config"]["verifiers"] for r in mine],
                    [r["served_per_s"] for r in mine],
                    marker="o",
                    label=f"{stations} stations",
                )
        axis.set_title(f"{mode}: escalations served per second")
        axis.set_xlabel("verifier processes (2-core box)")
        axis.set_xticks([1, 2, 4])
        axis.grid(alpha=0.3)
        if axis.get_lines():
            axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per configuration")
    parser.add_argument("--stations", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--verifiers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", choices=["line", "overload"], default=["line", "overload"])
    parser.add_argument("--parts-per-s", type=float, default=10.0, help="line mode: parts per station")
    parser.add_argument("--overload-fps", type=float, default=30.0, help="overload: parts per station")
    parser.add_argument("--deadline-ms", type=int, default=200)
    parser.add_argument("--verifier-threads", type=int, default=1, help="ONNX threads per verifier")
    parser.add_argument("--category", default="bracket")
    parser.add_argument("--pool", type=int, default=300, help="pre-rendered frames")
    parser.add_argument("--defect-rate", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if min(args.stations) < 1 or min(args.verifiers) < 1 or args.seconds <= 0:
        parser.error("--stations and --verifiers need counts >= 1 and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    models = build_models(args.category)
    pool = make_pool(args.category, models["edge"], args.pool, args.defect_rate, seed=11)
    quality = [cv2.IMWRITE_JPEG_QUALITY, escalation_settings("line", args.deadline_ms).jpeg_quality]
    jpeg_kb = np.mean([len(cv2.imencode(".jpg", p.image, quality)[1]) for p in pool]) / 1024
    configs = [Config(k, v, m) for m in args.modes for k in args.stations for v in args.verifiers]
    load_start = os.getloadavg()
    rows = []
    started = time.monotonic()
    with MosquittoBroker() as broker:
        for config in configs:
            print(f"[scale] {config.name}", flush=True)
            row = run_config(config, broker.url, models, pool, args)
            print(
                f"[scale]   served {row['served_per_s']}/s of {row['offered_per_s']}/s, answered "
                f"{row['answered_share']}, p99 {row['decision_p99_ms']} ms, fallbacks {row['fallbacks']}, "
                f"nothing lost {row['audit']['nothing_lost']}",
                flush=True,
            )
            rows.append(row)
    throughput_ratios(rows)
    settings = escalation_settings("line", args.deadline_ms)
    results = {
        "environment": {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "cpus": os.cpu_count(),
            "load_average_start": list(load_start),
            "load_average_end": list(os.getloadavg()),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "grid_wall_s": round(time.monotonic() - started, 1),
        },
        "seconds": args.seconds,
        "deadline_ms": args.deadline_ms,
        "breaker": f"{settings.breaker_failures} timeouts -> {settings.breaker_cooldown_s:g} s",
        "parts_per_s": args.parts_per_s,
        "overload_fps": args.overload_fps,
        "jpeg_quality": settings.jpeg_quality,
        "verifier_threads": args.verifier_threads,
        "models": {name: f"{path.name} ({MODEL_SETTINGS[name]})" for name, path in models.items()},
        "pool": {
            "category": args.category,
            "frames": len(pool),
            "defect_rate": args.defect_rate,
            "jpeg_kb": round(float(jpeg_kb), 1),
        },
        "rows": rows,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(rows, args.out / "scale.png")
    (args.out / "results.md").write_text(markdown(results))
    print(f"[scale] wrote {args.out}/results.json, results.md, scale.png", flush=True)


if __name__ == "__main__":
    main()
