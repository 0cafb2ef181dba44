"""HTTPS as shipped: a real `edgeinspect run` with `api.tls_*` set, a CA made here, clients over real TLS."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import REPO, free_port, write_stack_config
from fixtures_mqtt import wait_until
from unit.app.tls_certs import TlsFiles, write_server_pki

from device.broker import MosquittoBroker

pytestmark = pytest.mark.integration
KEYS = {"viewer": "viewer-tls-key-0123456789", "operator": "operator-tls-key-0123456789"}


@dataclass
class TlsStack:
    port: int
    pki: TlsFiles
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def trusting_client(self) -> httpx.Client:
        """A tablet that was given the plant's CA certificate."""
        return httpx.Client(
            base_url=self.base_url, verify=ssl.create_default_context(cafile=self.pki.ca_cert), timeout=10
        )


def _serving(process: subprocess.Popen[bytes], url: str, ca: ssl.SSLContext, log_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"edgeinspect run exited early:\n{log_path.read_text()[-4000:]}")
    try:
        return httpx.get(url, verify=ca, timeout=1).status_code in (200, 503)
    except httpx.TransportError:
        return False


@pytest.fixture
def tls_stack(tmp_path: Path, trained_model: Path, mosquitto: MosquittoBroker) -> Iterator[TlsStack]:
    """`edgeinspect run` from a config file whose api section names the certificate and key."""
    pki = write_server_pki(tmp_path / "pki")
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config_path = write_stack_config(data_dir, trained_model, mosquitto.url, port)
    config = yaml.safe_load(config_path.read_text())
    config["api"].update(tls_cert_file=str(pki.cert), tls_key_file=str(pki.key))
    config_path.write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    env.update({f"EDGEINSPECT_AUTH__{role.upper()}_KEY": key for role, key in KEYS.items()})
    log_path = tmp_path / "edgeinspect.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--config", str(config_path)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack = TlsStack(port=port, pki=pki, log_path=log_path)
    ca = ssl.create_default_context(cafile=pki.ca_cert)
    try:
        wait_until(
            lambda: _serving(process, f"{stack.base_url}/health", ca, log_path),
            timeout_s=90,
            what="edgeinspect run serving HTTPS",
        )
        yield stack
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_api_and_panel_over_verified_https(tls_stack: TlsStack) -> None:
    with tls_stack.trusting_client() as client:
        health = client.get("/health")
        assert health.status_code in (200, 503) and "status" in health.json()
        assert client.get("/status").status_code == 401  # TLS does not replace the keys
        status = client.get("/status", headers={"X-API-Key": KEYS["viewer"]})
        assert status.status_code == 200
        assert status.json()["threshold"] > 0
        panel = client.get("/")
        assert panel.status_code == 200
        assert panel.headers["content-type"].startswith("text/html")
        assert "<html" in panel.text.lower()
    log = tls_stack.log_path.read_text()
    assert f"panel https://127.0.0.1:{tls_stack.port}/" in log
    assert "clear text" not in log


def test_a_client_without_the_ca_refuses_the_server(tls_stack: TlsStack, tmp_path: Path) -> None:
    stranger_ca = write_server_pki(tmp_path / "other-pki", name="another-plant").ca_cert
    for context in (ssl.create_default_context(), ssl.create_default_context(cafile=stranger_ca)):
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{tls_stack.base_url}/health", verify=context, timeout=10)


def test_plain_http_to_the_tls_port_gets_no_api_answer(tls_stack: TlsStack) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_stack.port}/health", timeout=10)
    with tls_stack.trusting_client() as client:  # and the server still serves HTTPS afterwards
        assert client.get("/health").status_code in (200, 503)
