"""Release downloads over real HTTP: size, hash and length are checked; network errors are retried."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from device.plant.file_server import FileServer
from device.station.rollout.download import DownloadError, DownloadLimits, IntegrityError, fetch_verified

DATA = bytes(range(256)) * 64
SHA = hashlib.sha256(DATA).hexdigest()
FAST = DownloadLimits(timeout_s=5, retries=2, max_bytes=1_000_000, backoff_s=0.01)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    (tmp_path / "model.onnx").write_bytes(DATA)
    with FileServer(tmp_path) as srv:
        yield srv


def test_the_named_file_arrives_whole(server: FileServer) -> None:
    assert fetch_verified(f"{server.base_url}/model.onnx", len(DATA), SHA, FAST) == DATA


def test_a_changed_file_is_refused_not_retried(server: FileServer, tmp_path: Path) -> None:
    tampered = bytearray(DATA)
    tampered[100] ^= 0xFF
    (tmp_path / "model.onnx").write_bytes(bytes(tampered))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        fetch_verified(f"{server.base_url}/model.onnx", len(DATA), SHA, FAST)


def test_size_limits_hold_before_and_during_the_transfer(server: FileServer) -> None:
    small = DownloadLimits(max_bytes=1000)
    with pytest.raises(IntegrityError, match="at most 1000"):
        fetch_verified(f"{server.base_url}/model.onnx", len(DATA), SHA, small)
    with pytest.raises(IntegrityError, match="sends 16384 bytes"):
        fetch_verified(f"{server.base_url}/model.onnx", 100, SHA, FAST)


def test_a_missing_file_is_retried_then_reported(server: FileServer) -> None:
    with pytest.raises(DownloadError, match=r"after 3 attempt\(s\).*404"):
        fetch_verified(f"{server.base_url}/nope.onnx", len(DATA), SHA, FAST)


class _Endless(BaseHTTPRequestHandler):
    """A server that keeps sending past the promised size, with no Content-Length."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        for _ in range(100):
            self.wfile.write(b"x" * 65536)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_sending_too_much_is_cut_off() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/m.onnx"
        with pytest.raises(IntegrityError, match="more than the 1000 bytes"):
            fetch_verified(url, 1000, SHA, FAST)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as a plant's private CA would issue."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "release-server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_with_the_plants_ca_works_and_an_unknown_certificate_does_not(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    files = tmp_path / "files"
    files.mkdir()
    (files / "model.onnx").write_bytes(DATA)
    with FileServer(files, tls_cert_file=str(cert), tls_key_file=str(key)) as server:
        assert server.base_url.startswith("https://")
        url = f"{server.base_url}/model.onnx"
        trusted = DownloadLimits(timeout_s=5, retries=0, ca_file=str(cert))
        assert fetch_verified(url, len(DATA), SHA, trusted) == DATA
        with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_verified(url, len(DATA), SHA, DownloadLimits(timeout_s=5, retries=0))
