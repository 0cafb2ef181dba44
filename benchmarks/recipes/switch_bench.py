"""Recipe switch on a running line: how long the line is without a judged part, and whether a part is lost.

.venv/bin/python benchmarks/recipes/switch_bench.py [--model-a A.onnx --model-b B.onnx] [--switches 21]

A real EdgeRuntime (simulated camera, ONNX Runtime, a local Mosquitto) runs with two recipes whose models
differ; the bench alternates `select_recipe` through the runtime's command door and listens to the per-part
`result` topic as a PLC would. Per switch: the time between the last result of the old recipe and the
first of the new (receive times: what a PLC sees), from the command to the first new result, the
command's own time, and the frame-id gap across the switch (1 = no frame lost). The first switch loads
its model (`select` without `prepare`); the rest find it loaded. Without --model-a/-b two small models
are built first (about a minute each). Writes results.json and results.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.settings import load_settings  # noqa: E402
from device.station import commands as cmd  # noqa: E402
from device.station.broker import MosquittoBroker  # noqa: E402
from device.station.recipes import Recipe  # noqa: E402
from device.station.runtime import EdgeRuntime  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULT_TOPIC = "edgeinspect/line1/station1/result"


class ResultListener:
    """Subscribes to the per-part results and keeps (receive time, frame id, recipe) for each."""

    def __init__(self, url: str) -> None:
        self.received: list[tuple[float, int, str | None]] = []
        self._lock = threading.Lock()
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="switch-bench")
        self._client.on_message = self._on_message
        self._client.connect(host, int(port))
        self._client.subscribe(RESULT_TOPIC, qos=1)
        self._client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        with self._lock:
            self.received.append((time.monotonic(), payload["frame_id"], payload["recipe"]))

    def snapshot(self) -> list[tuple[float, int, str | None]]:
        with self._lock:
            return list(self.received)

    def wait_for(self, recipe: str, count: int, since: float = 0.0, timeout_s: float = 60.0) -> None:
        """Until `count` results named `recipe` arrived after `since` (monotonic)."""
        deadline = time.monotonic() + timeout_s
        while sum(r[2] == recipe and r[0] >= since for r in self.snapshot()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} results for recipe {recipe!r} in {timeout_s} s")
            time.sleep(0.01)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def build_models(out: Path) -> tuple[Path, Path]:
    """Two small, different models of the simulated bracket (a bank and a Gaussian head)."""
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    a = build_default_model(
        "bracket", ModelSettings(train_images=40, head="bank"), out / "a.onnx", progress=True
    )
    b = build_default_model(
        "bracket", ModelSettings(train_images=40, head="gaussian"), out / "b.onnx", progress=True
    )
    return a, b


def measure(model_a: Path, model_b: Path, switches: int, fps: float, per_recipe: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir, MosquittoBroker() as broker:
        settings = load_settings(
            None,
            {
                "data_dir": data_dir,
                "camera": {"category": "bracket", "fps": fps, "defect_rate": 0.2, "queue_size": 64},
                "model": {"path": str(model_a), "auto_build": False},
                "mqtt": {"url": broker.url, "client_id": "edge-switch-bench", "publish_results": True},
            },
        )
        listener = ResultListener(broker.url)
        runtime = EdgeRuntime(settings)
        runtime.start()
        try:
            model_b_id = runtime.models.register_file(model_b).id
            active = runtime.status().model
            assert active is not None and active.id is not None
            for name, model_id in (("a", active.id), ("b", model_b_id)):
                assert runtime.execute(cmd.SaveRecipe(recipe=Recipe(name=name, model_id=model_id))).ok
            assert runtime.execute(cmd.SelectRecipe(name="a")).ok
            listener.wait_for("a", per_recipe)
            rows = []
            for i in range(switches):
                new, old = ("b", "a") if i % 2 == 0 else ("a", "b")
                started = time.monotonic()
                result = runtime.execute(cmd.SelectRecipe(name=new))
                command_ms = (time.monotonic() - started) * 1000.0
                assert result.ok, result.message
                listener.wait_for(new, per_recipe, since=started)
                rows.append(_switch_row(listener.snapshot(), old, new, started, command_ms, i == 0))
                print(f"switch {i + 1}/{switches}: {rows[-1]}", flush=True)
            dropped = runtime.queue.dropped
        finally:
            runtime.stop()
            listener.close()
    return {"fps": fps, "switches": rows, "queue_dropped": dropped, "inference": "2 threads, default"}


def _switch_row(
    received: list[tuple[float, int, str | None]],
    old: str,
    new: str,
    started: float,
    command_ms: float,
    first: bool,
) -> dict[str, Any]:
    """The switch that began at `started`: the last `old` result before the first `new` one after it."""
    first_new = next(r for r in received if r[2] == new and r[0] >= started)
    last_old = max((r for r in received if r[2] == old and r[0] <= first_new[0]), key=lambda r: r[1])
    return {
        "model_loaded_at_switch": first,
        "command_ms": round(command_ms, 2),
        "gap_ms": round((first_new[0] - last_old[0]) * 1000.0, 2),
        "to_first_new_ms": round((first_new[0] - started) * 1000.0, 2),
        "frame_id_step": first_new[1] - last_old[1],
    }


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    warm = [r for r in results["switches"] if not r["model_loaded_at_switch"]]
    cold = [r for r in results["switches"] if r["model_loaded_at_switch"]]

    def stats(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
        values = [r[key] for r in rows]
        return {"p50": float(np.median(values)), "max": float(max(values))} if values else {}

    return {
        "prepared": {k: stats(warm, k) for k in ("gap_ms", "to_first_new_ms", "command_ms")},
        "loaded_at_switch": {k: stats(cold, k) for k in ("gap_ms", "to_first_new_ms", "command_ms")},
        "frames_lost": sum(r["frame_id_step"] - 1 for r in results["switches"]),
        "frame_period_ms": 1000.0 / results["fps"],
    }


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    lines = [
        f"Simulated camera at {results['fps']:g} fps (a frame every {s['frame_period_ms']:.0f} ms), "
        f"{len(results['switches'])} switches, queue drops {results['queue_dropped']}, "
        f"frames lost across switches {s['frames_lost']}; load average {results['load_average_1m']} "
        f"at the end (measured {results['measured']}, 2 cores).",
        "",
        "| switch | n | last old to first new result p50 / max (ms) | command to first new result "
        "p50 / max (ms) | command p50 / max (ms) |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("prepared", "model loaded (prepared)"),
        ("loaded_at_switch", "model loaded at the switch"),
    ):
        row = s[key]
        n = sum(r["model_loaded_at_switch"] == (key == "loaded_at_switch") for r in results["switches"])
        if not row["gap_ms"]:
            continue
        cells = [
            f"{row[k]['p50']:.0f} / {row[k]['max']:.0f}" for k in ("gap_ms", "to_first_new_ms", "command_ms")
        ]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-a", type=Path)
    parser.add_argument("--model-b", type=Path)
    parser.add_argument("--switches", type=int, default=21)
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--per-recipe", type=int, default=10, help="results under a recipe before switching")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_a and args.model_b:
            model_a, model_b = args.model_a, args.model_b
        else:
            model_a, model_b = build_models(Path(tmp))
        results = measure(model_a, model_b, args.switches, args.fps, args.per_recipe)
    results["summary"] = summarise(results)
    results["measured"] = time.strftime("%Y-%m-%d")
    results["load_average_1m"] = round(os.getloadavg()[0], 2)  # other work on the 2 cores skews the tail
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
