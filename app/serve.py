"""The main job: model ready -> broker reachable -> runtime running -> API and panel served."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from app.bootstrap import ensure_model
from app.settings import Settings

if TYPE_CHECKING:
    from device.runtime import EdgeRuntime

log = logging.getLogger("edgeinspect")
PROGRESS_PERIOD_S = 5.0


def run_line(settings: Settings, max_frames: int | None = None) -> int:
    from app.api.main import create_app
    from app.api.security import KeyStore
    from device.broker import ensure_local_broker
    from device.runtime import EdgeRuntime

    ensure_model(settings)
    broker = None
    if settings.mqtt.start_local_broker:
        # Persistent sessions: QoS 1 messages for subscribers survive a restart of this local broker.
        broker = ensure_local_broker(settings.mqtt.url, persistence_dir=Path(settings.data_dir) / "mosquitto")
    if broker is not None:
        log.info("started a local Mosquitto at %s", broker.url)
    runtime = EdgeRuntime(settings)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    server: uvicorn.Server | None = None
    try:
        runtime.start()
        keys = KeyStore.from_settings(settings.auth, settings.data_dir)
        app = create_app(runtime, settings, keys)
        config = uvicorn.Config(
            app,
            host=settings.api.host,
            port=settings.api.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,  # an open MJPEG viewer must not hold up a stop
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # we own signals
        threading.Thread(target=server.run, name="api", daemon=True).start()
        log.info(
            "line %s/%s running: panel http://%s:%d/  alerts on %s",
            settings.line.line_id,
            settings.line.station_id,
            settings.api.host,
            settings.api.port,
            runtime.topics.alert,
        )
        next_report = time.monotonic() + PROGRESS_PERIOD_S
        while not stop.wait(0.1):
            frames = runtime.metrics.frames
            if max_frames is not None and frames >= max_frames:
                log.info("judged %d frames (--max-frames): stopping", frames)
                _drain_outbox(runtime)
                break
            if time.monotonic() >= next_report:
                next_report += PROGRESS_PERIOD_S
                _report(runtime)
        _report(runtime)
    finally:
        if server is not None:
            server.should_exit = True
        runtime.stop()
        if broker is not None:
            broker.close()
    return 0


def _report(runtime: EdgeRuntime) -> None:
    status = runtime.status()
    log.info(
        "frames=%d defects=%d fps=%.1f latency p50=%s p99=%s ms dropped=%d spool=%d broker=%s",
        status.frames,
        status.defects,
        status.fps,
        status.latency.p50_ms,
        status.latency.p99_ms,
        status.dropped_frames,
        status.spool_depth,
        "up" if status.broker_connected else "down",
    )


def _drain_outbox(runtime: EdgeRuntime, timeout_s: float = 10.0) -> None:
    """Before a planned stop, give the link a moment to deliver what is spooled (it is kept anyway)."""
    deadline = time.monotonic() + timeout_s
    while runtime.outbox.depth() > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
