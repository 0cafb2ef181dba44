"""Shared fixtures: a real Mosquitto, a small trained model, and a real `edgeinspect run` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    """Small enough to build in well under a minute on 2 cores, accurate enough for the pipeline tests."""
    from vision.config import ModelSettings

    return ModelSettings(train_images=40, memory_bank_size=512)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model (+ .pt checkpoint) built the way the first run builds one, from simulated good parts."""
    from app.bootstrap import build_default_model

    out = tmp_path_factory.mktemp("model") / "default.onnx"
    return build_default_model(TEST_CATEGORY, small_model_settings(), out, progress=False)


@dataclass
class EdgeStack:
    base_url: str
    keys: dict[str, str]
    mqtt_url: str
    topics: object
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def headers(self, role: str = "operator") -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def write_stack_config(data_dir: Path, model: Path, mqtt_url: str, port: int, **camera: object) -> Path:
    config = {
        "data_dir": str(data_dir),
        "line": {"line_id": "line1", "station_id": "st1"},
        "camera": {"source": "simulator", "category": TEST_CATEGORY, "fps": 8, "defect_rate": 0.3, **camera},
        "model": {"path": str(model), "auto_build": False},
        "mqtt": {"url": mqtt_url, "client_id": f"edgeinspect-test-{port}", "start_local_broker": False},
        "api": {"host": "127.0.0.1", "port": port},
    }
    path = data_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


STACK_KEYS = {
    "viewer": "viewer-key-0123456789",
    "operator": "operator-key-0123456789",
    "admin": "admin-key-0123456789",
}


@contextmanager
def launch_edge_stack(
    data_dir: Path, model: Path, mqtt_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[EdgeStack]:
    """Run the real main job (`edgeinspect run`) in `data_dir` until the API answers; stop it on exit."""
    from device.topics import Topics

    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_stack_config(data_dir, model, mqtt_url, port)
    env = dict(os.environ)
    env.update({f"EDGEINSPECT_AUTH__{role.upper()}_KEY": key for role, key in STACK_KEYS.items()})
    env.update(extra_env or {})
    log_path = data_dir.parent / f"edgeinspect-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"edgeinspect run exited early:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code in (200, 503):
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"edgeinspect run did not serve in time:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.3)
    stack = EdgeStack(
        base_url=base_url,
        keys=dict(STACK_KEYS),
        mqtt_url=mqtt_url,
        topics=Topics("edgeinspect", "line1", "st1"),
        data_dir=data_dir,
        process=process,
        log_path=log_path,
    )
    try:
        yield stack
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def edge_stack(tmp_path: Path, trained_model: Path, mosquitto) -> Iterator[EdgeStack]:  # noqa: F811
    """The real main job (`edgeinspect run`) as a subprocess: runtime, model, broker, API and panel."""
    with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url) as stack:
        yield stack
