"""Sustained line rate and capture-to-alert latency of the whole runtime, alerts to a real Mosquitto.

    .venv/bin/python benchmarks/runtime/run_runtime_benchmark.py --model data/models/default.onnx \
        [--fps 30] [--seconds 60] [--defect-rate 0.1]

Frames are rendered by the simulator up front and replayed from memory at `--fps` (a real camera costs the
box no CPU to produce frames; rendering live would steal a core from the model). Writes
`benchmarks/runtime/results.json` and `results.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.settings import load_settings  # noqa: E402
from device.station.broker import MosquittoBroker  # noqa: E402
from device.station.runtime import EdgeRuntime  # noqa: E402
from vision.data.synthetic import LineSimulator  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent


class ReplaySource:
    """Pre-rendered frames at a fixed rate; ground truth attached like the simulator's."""

    def __init__(self, frames: list[tuple[np.ndarray, dict]], fps: float) -> None:
        self.name = "replay"
        self._frames = frames
        self._period = 1.0 / fps
        self._index = 0
        self._next = 0.0
        self._stop = threading.Event()

    def open(self) -> None:
        self._next = time.monotonic()

    def read(self) -> tuple[np.ndarray, dict]:
        self._next += self._period
        delay = self._next - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
        image, truth = self._frames[self._index % len(self._frames)]
        self._index += 1
        return image, truth

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        pass


def render_frames(category: str, count: int, defect_rate: float, size: int) -> list[tuple[np.ndarray, dict]]:
    simulator = LineSimulator(category, seed=99, defect_rate=defect_rate, image_size=size)
    frames = []
    for _ in range(count):
        part = simulator.next_part()
        frames.append(
            (cv2.cvtColor(part.image, cv2.COLOR_RGB2BGR), {"is_defect": part.defect_type is not None})
        )
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--defect-rate", type=float, default=0.1)
    parser.add_argument("--category", default="pcb")
    parser.add_argument("--label", default=None, help="name of this run in the results table")
    args = parser.parse_args()

    frames = render_frames(args.category, 300, args.defect_rate, 256)
    received: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker() as broker:
        settings = load_settings(
            None,
            {
                "data_dir": tmp,
                "camera": {"queue_size": 4},
                "model": {"path": str(Path(args.model).resolve()), "auto_build": False},
                "mqtt": {"url": broker.url, "client_id": "edgeinspect-bench"},
            },
        )
        runtime = EdgeRuntime(settings, source=ReplaySource(frames, args.fps))
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
        sub.on_connect = lambda c, *_: c.subscribe(runtime.topics.alert, qos=1)
        sub.on_message = lambda _c, _u, m: received.append({"t": time.time(), **json.loads(m.payload)})
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        runtime.start()
        time.sleep(3.0)  # warm-up: sessions, first frames
        warm_frames, warm_dropped = runtime.metrics.frames, runtime.queue.dropped
        runtime.metrics.restart_latency_window()  # measure the steady state only
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        judged = runtime.metrics.frames - warm_frames
        dropped = runtime.queue.dropped - warm_dropped
        latencies = np.asarray(runtime.metrics.latency_samples_ms())
        status = runtime.status()
        runtime.stop()
        time.sleep(1.0)
        sub.loop_stop()
        sub.disconnect()

    result = {
        "label": args.label or Path(args.model).name,
        "model": str(args.model),
        "model_sha256": status.model.sha256 if status.model else None,
        "target_fps": args.fps,
        "seconds": round(elapsed, 1),
        "sustained_fps": round(judged / elapsed, 2),
        "frames_judged": judged,
        "frames_dropped": dropped,
        "capture_to_decision_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "capture_to_decision_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "inference_p50_ms": status.latency.inference_p50_ms,
        "alerts_raised": status.defects,
        "alerts_received": len(received),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    results_path = OUT_DIR / "results.json"
    runs = json.loads(results_path.read_text()) if results_path.exists() else []
    runs = [r for r in runs if r.get("label") != result["label"]] + [result]
    results_path.write_text(json.dumps(runs, indent=2) + "\n")
    lines = [
        "| run | target fps | sustained fps | dropped | capture→decision p50 ms | p99 ms "
        "| inference p50 ms | alerts raised / received |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['label']} | {r['target_fps']:.0f} | {r['sustained_fps']:.1f} | {r['frames_dropped']} | "
            f"{r['capture_to_decision_p50_ms']:.1f} | {r['capture_to_decision_p99_ms']:.1f} | "
            f"{r['inference_p50_ms']} | {r['alerts_raised']} / {r['alerts_received']} |"
        )
    (OUT_DIR / "results.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
