"""The main job: model ready -> broker reachable -> runtime running -> API and panel served."""

from __future__ import annotations

import ipaddress
import logging
import signal
import ssl
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from app.bootstrap import ensure_build_template, ensure_model
from app.fleet_audit import audit_every_door
from app.settings import ApiSettings, ConfigError, Settings
from device.environment import environment_record

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from device.station.runtime import EdgeRuntime

log = logging.getLogger("edgeinspect")
PROGRESS_PERIOD_S = 5.0


def run_line(settings: Settings, max_frames: int | None = None) -> int:
    from app.api.main import create_app
    from app.api.security import KeyStore
    from device.station.broker import ensure_local_broker
    from device.station.runtime import EdgeRuntime

    for line in environment_record().lines():
        log.info("environment: %s", line)
    ensure_model(settings)
    ensure_build_template(settings)
    # First, so a second instance on this data directory stops here (DataDirLockedError) before it touches
    # the broker, the spool or the port.
    runtime = EdgeRuntime(settings)
    broker = None
    if settings.mqtt.start_local_broker:
        # Persistent sessions: QoS 1 messages for subscribers survive a restart of this local broker.
        broker = ensure_local_broker(settings.mqtt.url, persistence_dir=Path(settings.data_dir) / "mosquitto")
    if broker is not None:
        log.info("started a local Mosquitto at %s", broker.url)
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
        # MQTT commands, OPC UA writes and fleet rollouts go into the API's audit log: one log, every door.
        audit_every_door(runtime, app.state.audit)
        server = uvicorn.Server(api_server_config(app, settings.api))
        # Signals stay ours: uvicorn installs handlers only when it runs on the main thread, and it does not.
        threading.Thread(target=server.run, name="api", daemon=True).start()
        log.info(
            "line %s/%s running: panel %s  alerts on %s",
            settings.line.line_id,
            settings.line.station_id,
            panel_url(settings.api),
            runtime.topics.alert,
        )
        warn_if_clear_text(settings.api)
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


def api_server_config(app: ASGIApp, api: ApiSettings) -> uvicorn.Config:
    """The API server as shipped, loaded here so a bad TLS file fails start-up, not the server thread."""
    config = uvicorn.Config(
        app,
        host=api.host,
        port=api.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,  # an open MJPEG viewer must not hold up a stop
        ssl_certfile=api.tls_cert_file,  # both or neither (ApiSettings checks the pair)
        ssl_keyfile=api.tls_key_file,
    )
    try:
        config.load()  # builds the SSLContext; the settings checked the files, but they may have changed
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"invalid configuration:\n  api.tls_cert_file/api.tls_key_file: {exc}") from exc
    return config


def panel_url(api: ApiSettings) -> str:
    scheme = "https" if api.tls_enabled else "http"
    host = f"[{api.host}]" if ":" in api.host else api.host
    return f"{scheme}://{host}:{api.port}/"


def is_loopback(host: str) -> bool:
    """Only this box can reach a loopback listener; any other address is on the plant network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume it resolves to a network interface
        return False


def warn_if_clear_text(api: ApiSettings) -> bool:
    """Log (and return True) when API keys would cross the network unencrypted."""
    if api.tls_enabled or is_loopback(api.host):
        return False
    log.warning(
        "API on %s:%d over plain HTTP: API keys and panel logins travel in clear text on the network; "
        "set api.tls_cert_file and api.tls_key_file to serve HTTPS (README, 'HTTPS')",
        api.host,
        api.port,
    )
    return True


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
