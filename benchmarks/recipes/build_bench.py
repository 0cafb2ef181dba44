"""A new product's model built on the station while the line runs: how long, and what the line loses.

.venv/bin/python benchmarks/recipes/build_bench.py [--model LINE.onnx] [--parts 100] [--fps 30]

A real EdgeRuntime (simulated camera at --fps, the line's model on ONNX Runtime with 2 threads, a local
Mosquitto) captures --parts good parts of a product through `capture_product`, then `build_product`
builds their model on the station (the build template, ONNX Runtime and numpy, one thread at nice 19)
while the line keeps judging. Recorded: the build's wall time (capture done -> model registered), frames
judged and dropped during the build against the camera's rate, the line's inference latency before and
during the build, and the same build alone on a quiet line for comparison. Without --model a small model
for the line is built first (about a minute). Writes build_results.json and build_results.md here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.settings import load_settings  # noqa: E402
from device.station import commands as cmd  # noqa: E402
from device.station.broker import MosquittoBroker  # noqa: E402
from device.station.runtime import EdgeRuntime  # noqa: E402
from vision.build_inputs import load_good_images  # noqa: E402
from vision.build_template import export_build_template  # noqa: E402
from vision.config import ModelSettings  # noqa: E402
from vision.station_build import build_on_station, load_kit  # noqa: E402

HERE = Path(__file__).resolve().parent
PRODUCT = "bench_part"
TEMPLATE_SETTINGS = ModelSettings()  # both heads; `auto` picks per product


def line_model(out: Path) -> Path:
    from app.bootstrap import build_default_model

    return build_default_model("bracket", ModelSettings(train_images=40), out / "line.onnx", progress=True)


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def _latency(runtime: EdgeRuntime) -> dict[str, float]:
    latency = runtime.status().latency
    return {"p50_ms": round(latency.p50_ms, 2), "p99_ms": round(latency.p99_ms, 2)}


def measure(model: Path, parts: int, fps: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir, MosquittoBroker() as broker:
        settings = load_settings(
            None,
            {
                "data_dir": data_dir,
                "camera": {"category": "bracket", "fps": fps, "defect_rate": 0.0, "queue_size": 64},
                "model": {"path": str(model), "auto_build": False},
                "mqtt": {"url": broker.url, "client_id": "edge-build-bench"},
            },
        )
        export_build_template(TEMPLATE_SETTINGS, settings.model.build_template)
        runtime = EdgeRuntime(settings)
        runtime.start()
        try:
            assert runtime.execute(cmd.CaptureProduct(product=PRODUCT, count=parts)).ok
            _wait(lambda: runtime.capture_status().state == "done", 120, "capture")  # type: ignore[union-attr]
            time.sleep(3.0)  # a few seconds of the line alone: its latency before the build
            before = _latency(runtime)
            frames0, dropped0, started = runtime.metrics.frames, runtime.queue.dropped, time.monotonic()
            assert runtime.execute(cmd.BuildProduct(product=PRODUCT)).ok
            _wait(lambda: runtime.build_status().state != "running", 300, "build")  # type: ignore[union-attr]
            seconds = time.monotonic() - started
            during = _latency(runtime)
            status = runtime.build_status()
            assert status is not None and status.state == "done", status
            judged, dropped = runtime.metrics.frames - frames0, runtime.queue.dropped - dropped0
            load = round(os.getloadavg()[0], 2)
        finally:
            runtime.stop()
        alone = _build_alone(settings.model.build_template, Path(data_dir) / "datasets")
    return {
        "parts": parts,
        "fps": fps,
        "build_s": round(seconds, 1),
        "build_alone_s": round(alone, 1),
        "frames_expected": round(seconds * fps),
        "frames_judged_during_build": judged,
        "frames_dropped_during_build": dropped,
        "judged_fps_during_build": round(judged / seconds, 1),
        "latency_before": before,
        "latency_during": during,
        "head_choice": status.head_choice,
        "fit_images": status.fit_images,
        "held_back_images": len(status.held_back_scores),
        "false_reject_rate_held_back": status.false_reject_rate,
        "load_average_1m": load,
    }


def _build_alone(template: str, datasets: Path) -> float:
    """The same build on a quiet box (no line), one thread, as the station runs it."""
    kit = load_kit(template)
    started = time.monotonic()
    size = next(iter(kit.values())).settings.image_size
    images, _, sha = load_good_images(datasets, PRODUCT, size, progress=False)
    with tempfile.TemporaryDirectory() as out:
        build_on_station(kit, images, Path(out) / "m.onnx", PRODUCT, train_data_sha256=sha, threads=1)
    return time.monotonic() - started


def markdown(r: dict[str, Any]) -> str:
    before, during = r["latency_before"], r["latency_during"]
    header = (
        "| build (capture done -> model registered) | same build, line stopped | frames judged / camera "
        "frames during the build | frames dropped | line p50 / p99 before (ms) | line p50 / p99 during (ms) "
        "| held-back false rejects |"
    )
    row = [
        f"{r['build_s']} s",
        f"{r['build_alone_s']} s",
        f"{r['frames_judged_during_build']} / {r['frames_expected']} ({r['judged_fps_during_build']} fps)",
        str(r["frames_dropped_during_build"]),
        f"{before['p50_ms']} / {before['p99_ms']}",
        f"{during['p50_ms']} / {during['p99_ms']}",
        f"{r['false_reject_rate_held_back']:.0%} of {r['held_back_images']}",
    ]
    return (
        f"{r['parts']} good parts captured from the simulated camera at {r['fps']:g} fps, then built on the "
        f"station while the line judged ({r['head_choice']}; measured {r['measured']}, 2 cores, load average "
        f"{r['load_average_1m']} at the end of the build).\n\n{header}\n|{'---|' * len(row)}\n| "
        + " | ".join(row)
        + " |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="the line's model (default: build a small one first)")
    parser.add_argument("--parts", type=int, default=100)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or line_model(Path(tmp))
        results = measure(model, args.parts, args.fps)
    results["measured"] = time.strftime("%Y-%m-%d")
    (HERE / "build_results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "build_results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
