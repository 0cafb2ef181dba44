"""No secret leaves the box through what a viewer can read.

The real `edgeinspect run` is started with its keys and an MQTT password in the environment (as the README
recommends). A viewer key then reads every GET endpoint in the OpenAPI schema, the retained MQTT status,
the Prometheus metrics and the process log; none may contain any configured secret. A viewer may also not
reach anything that changes the line.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from conftest import STACK_KEYS, EdgeStack, launch_edge_stack
from fixtures_mqtt import MessageCollector, wait_until

pytestmark = pytest.mark.integration

MQTT_PASSWORD = "mqtt-password-5f1e9c0d7a"
SECRETS = {
    "admin key": STACK_KEYS["admin"],
    "operator key": STACK_KEYS["operator"],
    "viewer key": STACK_KEYS["viewer"],
    "mqtt password": MQTT_PASSWORD,
}


@pytest.fixture
def stack_with_secrets(tmp_path: Path, trained_model: Path, mosquitto) -> EdgeStack:
    # Mosquitto here allows anonymous clients, so it accepts (and ignores) the credentials: what matters is
    # that the runtime holds a password and never shows it.
    env = {"EDGEINSPECT_MQTT__USERNAME": "station1", "EDGEINSPECT_MQTT__PASSWORD": MQTT_PASSWORD}
    with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url, env) as stack:
        yield stack


def _concrete_paths(client: httpx.Client, schema: dict) -> list[str]:
    """Every GET path of the schema with its parameters filled from live data (an alert id, ...)."""
    wait_until(lambda: client.get("/alerts").json()["total"] > 0, 60, "a first alert")
    alert_id = client.get("/alerts").json()["items"][0]["alert_id"]
    wait_until(lambda: client.get("/archive").json()["total"] > 0, 60, "a first archived image")
    fill = {
        "alert_id": alert_id,
        "item_id": client.get("/archive").json()["items"][0]["id"],
        "job_id": "no-such-job",  # a 404 body is read like any other
        "image": "0000.png",  # no capture yet: a 404
        "frame_id": 0,  # no shadow run yet: a 404
    }
    paths = []
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        names = re.findall(r"{(\w+)}", path)
        assert set(names) <= set(fill), f"no value to fill {names} in {path}: extend this test"
        paths.append(path.format(**fill))
    return paths


def test_a_viewer_reads_no_secret_anywhere(stack_with_secrets: EdgeStack) -> None:
    stack = stack_with_secrets
    status = MessageCollector(stack.mqtt_url, ["edgeinspect/#"]).start()
    viewer = httpx.Client(base_url=stack.base_url, headers=stack.headers("viewer"), timeout=10)
    operator = httpx.Client(base_url=stack.base_url, headers=stack.headers("operator"), timeout=10)
    try:
        # Some activity first, so the audit log, alerts and metrics hold something.
        assert operator.post("/inspection/threshold", json={"threshold": 1.5}).status_code == 200
        assert operator.post("/inspection/threshold/reset").status_code == 200
        schema = httpx.get(f"{stack.base_url}/openapi.json").json()
        bodies: dict[str, bytes] = {}
        for path in _concrete_paths(viewer, schema):
            params = {"max_frames": 1} if path.endswith(".mjpeg") else None
            response = viewer.get(path, params=params)
            assert response.status_code < 500, f"GET {path}: {response.status_code}"
            bodies[f"GET {path}"] = response.content
        assert b"inspection" in bodies["GET /config"]  # the view is there, only without secrets
        status.wait_for(lambda got: any(m.topic.endswith("/status") for m in got), 30)
        for message in status.snapshot():
            bodies[f"MQTT {message.topic}"] = message.payload
        bodies["process log"] = stack.log_path.read_bytes()

        leaks = [
            f"{secret_name} in {where}"
            for where, body in bodies.items()
            for secret_name, secret in SECRETS.items()
            if secret.encode() in body
        ]
        assert not leaks, leaks
        assert any(k.startswith("GET /metrics") for k in bodies) and any(k.startswith("MQTT") for k in bodies)
    finally:
        status.stop()
        viewer.close()
        operator.close()


def test_a_viewer_changes_nothing(stack_with_secrets: EdgeStack) -> None:
    """Every operation that is not a GET answers 401/403 to a viewer key (and to no key)."""
    stack = stack_with_secrets
    schema = httpx.get(f"{stack.base_url}/openapi.json").json()
    changed = []
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        for path, operations in schema["paths"].items():
            concrete = re.sub(r"{\w+}", "x", path)
            for method in operations:
                if method == "get":
                    continue
                for headers in (stack.headers("viewer"), {}):
                    response = client.request(method.upper(), concrete, headers=headers, json={})
                    if response.status_code not in (401, 403):
                        changed.append(
                            f"{method.upper()} {path} with {headers or 'no key'}: {response.status_code}"
                        )
    assert not changed, changed
    status = httpx.get(f"{stack.base_url}/status", headers=stack.headers("viewer")).json()
    assert status["state"] == "running"
