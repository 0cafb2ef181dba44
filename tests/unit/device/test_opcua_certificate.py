"""The OPC UA server's certificate: made once on first enable, reused, replaced only when it cannot serve."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from device.station.opcua.certificate import (
    CERTIFICATE_FILENAME,
    PRIVATE_KEY_FILENAME,
    RENEW_DAYS,
    CertificateError,
    application_uri,
    load_configured,
    load_or_generate,
)

URI = application_uri("line1", "st1")
HOSTS = ["127.0.0.1", "station-7.plant.example"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_certificate(path: Path, key: object, uri: str, days: int = 365) -> None:
    certificate = cert_gen.generate_self_signed_app_certificate(
        key,  # type: ignore[arg-type]
        "test",
        {},
        [x509.UniformResourceIdentifier(uri)],
        [ExtendedKeyUsageOID.SERVER_AUTH],
        days=days,
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.DER))


def test_made_once_with_a_private_key_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "opcua"
    first = load_or_generate(folder, URI, HOSTS)
    assert first.origin == "generated"
    assert (first.certificate_file, first.private_key_file) == (
        folder / CERTIFICATE_FILENAME,
        folder / PRIVATE_KEY_FILENAME,
    )
    assert _mode(first.private_key_file) == 0o600 and _mode(folder) == 0o700
    assert not list(folder.glob("*.tmp"))
    names = first.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [URI]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert "station-7.plant.example" in names.get_values_for_type(x509.DNSName)
    der = first.certificate_file.read_bytes()
    assert first.sha1 == ":".join(f"{b:02X}" for b in hashlib.sha1(der).digest())
    assert first.sha256.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert first.private_key.key_size >= 2048

    again = load_or_generate(folder, URI, ["other-host"])  # a new host name alone changes nothing
    assert again.origin == "reused" and (again.sha1, again.sha256) == (first.sha1, first.sha256)
    assert again.certificate_file.read_bytes() == der


def test_a_key_readable_by_others_is_made_private_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_or_generate(tmp_path, URI, HOSTS)
    first.private_key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="device.station.opcua.certificate"):
        again = load_or_generate(tmp_path, URI, HOSTS)
    assert again.sha1 == first.sha1 and _mode(first.private_key_file) == 0o600
    assert "readable by other users" in caplog.text


def test_replaced_for_a_renamed_station_keeping_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_or_generate(tmp_path, URI, HOSTS)
    renamed = application_uri("line1", "st2")
    with caplog.at_level(logging.WARNING, logger="device.station.opcua.certificate"):
        second = load_or_generate(tmp_path, renamed, HOSTS)
    assert second.origin == "generated" and second.sha1 != first.sha1
    assert second.private_key.public_key() == first.private_key.public_key()
    names = second.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [renamed]
    assert "is replaced" in caplog.text and URI in caplog.text


def test_replaced_when_expiring_corrupt_or_missing(tmp_path: Path) -> None:
    first = load_or_generate(tmp_path, URI, HOSTS)
    _write_certificate(first.certificate_file, first.private_key, URI, days=10)  # inside RENEW_DAYS
    expiring = load_or_generate(tmp_path, URI, HOSTS)
    assert expiring.origin == "generated"
    assert expiring.not_after - datetime.now(timezone.utc) > timedelta(days=RENEW_DAYS)

    first.certificate_file.write_bytes(b"not a certificate")
    assert load_or_generate(tmp_path, URI, HOSTS).origin == "generated"

    first.certificate_file.unlink()
    remade = load_or_generate(tmp_path, URI, HOSTS)
    assert remade.origin == "generated" and remade.private_key.public_key() == first.private_key.public_key()

    first.private_key_file.unlink()  # a new key: the old certificate is of no use
    rekeyed = load_or_generate(tmp_path, URI, HOSTS)
    assert rekeyed.private_key.public_key() != first.private_key.public_key()
    assert rekeyed.certificate.public_key() == rekeyed.private_key.public_key()


def test_a_corrupt_generated_key_is_an_error_not_silently_replaced(tmp_path: Path) -> None:
    first = load_or_generate(tmp_path, URI, HOSTS)
    first.private_key_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CertificateError, match="delete it and its certificate") as refused:
        load_or_generate(tmp_path, URI, HOSTS)
    assert "garbage" not in str(refused.value)


def test_a_configured_certificate_is_checked(tmp_path: Path) -> None:
    key = cert_gen.generate_private_key()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(cert_gen.dump_private_key_as_pem(key))
    cert_file = tmp_path / "cert.der"
    _write_certificate(cert_file, key, URI)
    configured = load_configured(str(cert_file), str(key_file), URI)
    assert configured.origin == "configured" and configured.certificate_file == cert_file

    with pytest.raises(
        CertificateError, match=r"opcua\.certificate\.certificate_file .*urn:edgeinspect:line1:st2"
    ):
        load_configured(str(cert_file), str(key_file), application_uri("line1", "st2"))

    other_key = tmp_path / "other.pem"
    other_key.write_bytes(cert_gen.dump_private_key_as_pem(cert_gen.generate_private_key()))
    with pytest.raises(CertificateError, match="does not belong to the private key"):
        load_configured(str(cert_file), str(other_key), URI)

    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(CertificateError, match=r"opcua\.certificate\.private_key_file: .* not an RSA key"):
        load_configured(str(cert_file), str(ec_key), URI)

    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(CertificateError, match="not an unencrypted PEM or DER private key"):
        load_configured(str(cert_file), str(encrypted), URI)

    with pytest.raises(CertificateError, match=r"opcua\.certificate\.certificate_file: cannot read"):
        load_configured(str(tmp_path / "missing.der"), str(key_file), URI)
