"""Shared fixtures: a real Mosquitto, a small trained model, and a real `edgeinspect run` process."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fixtures_mqtt import mosquitto  # noqa: F401  (a real broker on a free loopback port)

REPO = Path(__file__).resolve().parents[1]
TEST_CATEGORY = "bracket"  # the model is at image AUROC 1.0 here: pipeline tests test the pipeline


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small_model_settings():
    """Small enough to build in well under a minute on 2 cores, accurate enough for the pipeline tests.

    The simulated bracket moves a few pixels from part to part, so it gets the head the README names for
    parts that move (the bank); the default Gaussian head has its own fixture, `gaussian_trained_model`."""
    from vision.config import ModelSettings

    return ModelSettings(train_images=40, memory_bank_size=512, head="bank", neighbourhood=1)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model (+ .pt checkpoint) built the way the first run builds one, from simulated good parts."""
    from app.bootstrap import build_default_model

    out = tmp_path_factory.mktemp("model") / "default.onnx"
    return build_default_model(TEST_CATEGORY, small_model_settings(), out, progress=False)


@pytest.fixture(scope="session")
def gaussian_trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default head (a Gaussian per position): what teaching confirmed defects needs. On the moving
    bracket it is less accurate than the bank, which the tests of teaching do not depend on."""
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    out = tmp_path_factory.mktemp("gaussian_model") / "gaussian.onnx"
    settings = ModelSettings(train_images=40)
    return build_default_model(TEST_CATEGORY, settings, out, progress=False)


@dataclass
class EdgeStack:
    base_url: str
    keys: dict[str, str]
    mqtt_url: str
    topics: object
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    port: int

    def headers(self, role: str = "operator") -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


# Per-section settings a test puts over the stack's config, e.g. {"camera": {"fps": 20}}.
ConfigOverrides = Mapping[str, Mapping[str, object]]


def write_stack_config(
    data_dir: Path, model: Path, mqtt_url: str, port: int, overrides: ConfigOverrides | None = None
) -> Path:
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "line": {"line_id": "line1", "station_id": "st1"},
        "camera": {"source": "simulator", "category": TEST_CATEGORY, "fps": 8, "defect_rate": 0.3},
        "model": {"path": str(model), "auto_build": False},
        "mqtt": {"url": mqtt_url, "client_id": f"edgeinspect-test-{port}", "start_local_broker": False},
        "api": {"host": "127.0.0.1", "port": port},
    }
    for section, values in (overrides or {}).items():
        config.setdefault(section, {}).update(values)
    path = data_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


STACK_KEYS = {
    "viewer": "viewer-key-0123456789",
    "operator": "operator-key-0123456789",
    "admin": "admin-key-0123456789",
}


def start_edge_stack(
    data_dir: Path,
    model: Path,
    mqtt_url: str,
    extra_env: dict[str, str] | None = None,
    *,
    overrides: ConfigOverrides | None = None,
    port: int | None = None,
    keys: Mapping[str, str] = STACK_KEYS,
    ca_cert: Path | None = None,
    log_path: Path | None = None,
    start_timeout_s: float = 90.0,
) -> EdgeStack:
    """Start the real main job (`edgeinspect run`) in `data_dir` and return once the API answers.

    `port` again restarts a station on the same config (same MQTT client id); `ca_cert` means the config
    serves HTTPS (`api.tls_*` in `overrides`) and the API is polled trusting that CA; `keys` go in as the
    role keys (environment). The caller stops it: `stop_edge_stack`, or use `launch_edge_stack`."""
    from device.station.topics import Topics

    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_stack_config(data_dir, model, mqtt_url, port, overrides)
    env = dict(os.environ)
    env.update({f"EDGEINSPECT_AUTH__{role.upper()}_KEY": key for role, key in keys.items()})
    env.update(extra_env or {})
    log_path = log_path or data_dir.parent / f"edgeinspect-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"{'https' if ca_cert else 'http'}://127.0.0.1:{port}"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_cert) if ca_cert else True
    deadline = time.monotonic() + start_timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"edgeinspect run exited early:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/health", verify=verify, timeout=1).status_code in (200, 503):
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"edgeinspect run did not serve in time:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.3)
    return EdgeStack(
        base_url=base_url,
        keys=dict(keys),
        mqtt_url=mqtt_url,
        topics=Topics("edgeinspect", "line1", "st1"),
        data_dir=data_dir,
        process=process,
        log_path=log_path,
        port=port,
    )


def stop_edge_stack(stack: EdgeStack, timeout_s: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL if it does not stop in `timeout_s`; the exit code, or None if it was killed."""
    stack.process.terminate()
    try:
        return stack.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait(timeout=5)
        return None


@contextmanager
def launch_edge_stack(
    data_dir: Path, model: Path, mqtt_url: str, extra_env: dict[str, str] | None = None, **options: Any
) -> Iterator[EdgeStack]:
    """Run the real main job (`edgeinspect run`) in `data_dir` until the API answers; stop it on exit.
    `options` are `start_edge_stack`'s (config overrides, port, keys, TLS CA, log path, start timeout)."""
    stack = start_edge_stack(data_dir, model, mqtt_url, extra_env, **options)
    try:
        yield stack
    finally:
        stop_edge_stack(stack)


@pytest.fixture
def edge_stack(tmp_path: Path, trained_model: Path, mosquitto) -> Iterator[EdgeStack]:  # noqa: F811
    """The real main job (`edgeinspect run`) as a subprocess: runtime, model, broker, API and panel."""
    with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url) as stack:
        yield stack
