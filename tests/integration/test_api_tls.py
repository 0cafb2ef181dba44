"""HTTPS as shipped: a real `edgeinspect run` with `api.tls_*` set, a CA made here, clients over real TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import launch_edge_stack
from unit.app.tls_certs import TlsFiles, write_server_pki

from device.station.broker import MosquittoBroker

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


@pytest.fixture
def tls_stack(tmp_path: Path, trained_model: Path, mosquitto: MosquittoBroker) -> Iterator[TlsStack]:
    """`edgeinspect run` from a config file whose api section names the certificate and key."""
    pki = write_server_pki(tmp_path / "pki")
    tls = {"api": {"tls_cert_file": str(pki.cert), "tls_key_file": str(pki.key)}}
    with launch_edge_stack(
        tmp_path / "data",
        trained_model,
        mosquitto.url,
        overrides=tls,
        keys=KEYS,
        ca_cert=pki.ca_cert,
        log_path=tmp_path / "edgeinspect.log",
    ) as stack:
        yield TlsStack(port=stack.port, pki=pki, log_path=stack.log_path)


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
