"""The OPC UA server's application instance certificate: the configured one, or one of its own.

Without `opcua.certificate` the server makes a self-signed certificate and an RSA key on first enable, under
`<data_dir>/opcua/` (the key created with mode 0600, never readable by others), and reuses them after, so a
client trusts the station once. A new certificate is made only when the old one cannot serve: its application
URI no longer names this station (line or station renamed), it expires within `RENEW_DAYS`, or it does not
belong to the key. The thumbprints (SHA-1, as OPC UA clients show them, and SHA-256) are logged at start-up;
the key never is.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

log = logging.getLogger(__name__)

GENERATED_DIR = "opcua"  # under data_dir
CERTIFICATE_FILENAME = "server-cert.der"
PRIVATE_KEY_FILENAME = "server-key.pem"
VALID_DAYS = 5 * 365
RENEW_DAYS = 30  # a certificate expiring sooner is replaced at start-up

Origin = Literal["generated", "reused", "configured"]


class CertificateError(RuntimeError):
    """The certificate or key cannot be used; the message names the file (and the setting, if configured)."""


def application_uri(line_id: str, station_id: str) -> str:
    """The server's ApplicationUri, which its certificate must carry as a URI subject alternative name."""
    return f"urn:edgeinspect:{line_id}:{station_id}"


@dataclass(frozen=True)
class ServerCertificate:
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    certificate_file: Path
    private_key_file: Path
    origin: Origin

    @property
    def sha1(self) -> str:
        """The thumbprint OPC UA clients show (UaExpert, node-opcua's PKI folder names), colon-separated."""
        return _hex(self.certificate.fingerprint(hashes.SHA1()))  # a thumbprint, not a signature

    @property
    def sha256(self) -> str:
        return _hex(self.certificate.fingerprint(hashes.SHA256()))

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    def describe(self) -> str:
        return (
            f"{self.certificate_file} ({self.origin}; SHA-1 {self.sha1}, SHA-256 {self.sha256}, "
            f"valid until {self.not_after:%Y-%m-%d})"
        )


def load_configured(certificate_file: str, private_key_file: str, app_uri: str) -> ServerCertificate:
    """`opcua.certificate`: both files must load, belong together, be valid now and name `app_uri`."""
    cert_path, key_path = Path(certificate_file), Path(private_key_file)
    certificate = _read_certificate(cert_path, "opcua.certificate.certificate_file")
    key = _read_key(key_path, "opcua.certificate.private_key_file")
    problem = _unusable(certificate, key, app_uri, renew_days=0)
    if problem:
        raise CertificateError(f"opcua.certificate.certificate_file {cert_path}: {problem}")
    if _readable_by_others(key_path):
        log.warning("OPC UA private key %s is readable by other users: chmod 600 it", key_path)
    return ServerCertificate(certificate, key, cert_path, key_path, "configured")


def load_or_generate(directory: Path, app_uri: str, hosts: list[str]) -> ServerCertificate:
    """The certificate in `directory`, reused if it still serves `app_uri`; made (once) otherwise.

    `hosts` (the endpoint's host, this machine's name) go into the subject alternative names of a new one.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / CERTIFICATE_FILENAME, directory / PRIVATE_KEY_FILENAME
    if key_path.exists():
        key = _read_key(key_path, "the generated OPC UA key (delete it and its certificate to make new ones)")
        if _readable_by_others(key_path):
            os.chmod(key_path, 0o600)
            log.warning("OPC UA private key %s was readable by other users: mode set to 0600", key_path)
    else:
        key = cert_gen.generate_private_key()
        _write_private(key_path, cert_gen.dump_private_key_as_pem(key))
        cert_path.unlink(missing_ok=True)  # a certificate without its key is of no use
    if cert_path.exists():
        try:
            existing = _read_certificate(cert_path, "the generated OPC UA certificate")
            problem = _unusable(existing, key, app_uri, renew_days=RENEW_DAYS)
        except CertificateError as exc:  # our own public file: made again from the key
            problem = str(exc)
        else:
            if problem is None:
                return ServerCertificate(existing, key, cert_path, key_path, "reused")
        log.warning(
            "OPC UA certificate %s is replaced: %s; clients must trust the new one", cert_path, problem
        )
    certificate = _self_signed(key, app_uri, hosts)
    _write_public(cert_path, certificate.public_bytes(serialization.Encoding.DER))
    return ServerCertificate(certificate, key, cert_path, key_path, "generated")


def endpoint_hosts(endpoint_host: str | None) -> list[str]:
    """Names for a new certificate: the endpoint's host (unless a wildcard) and this machine's name."""
    hosts = []
    if endpoint_host and endpoint_host not in ("0.0.0.0", "::"):
        hosts.append(endpoint_host)
    name = socket.gethostname()
    if name and name not in hosts:
        hosts.append(name)
    return hosts


# ---- helpers ----------------------------------------------------------------------------------------
def _self_signed(key: rsa.RSAPrivateKey, app_uri: str, hosts: list[str]) -> x509.Certificate:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri)]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    station = app_uri.removeprefix("urn:edgeinspect:").replace(":", "/")
    return cert_gen.generate_self_signed_app_certificate(
        key,
        f"EdgeInspect {station}",
        {"organizationName": "EdgeInspect"},
        names,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=VALID_DAYS,
    )


def _unusable(
    certificate: x509.Certificate, key: rsa.RSAPrivateKey, app_uri: str, renew_days: int
) -> str | None:
    """Why `certificate` cannot serve this station with `key`; None if it can."""
    if certificate.public_key() != key.public_key():
        return "it does not belong to the private key"
    now = datetime.datetime.now(datetime.timezone.utc)
    if certificate.not_valid_before_utc > now:
        return f"it is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if certificate.not_valid_after_utc <= now + datetime.timedelta(days=renew_days):
        return f"it expires on {certificate.not_valid_after_utc:%Y-%m-%d}"
    try:
        uris = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        named = uris.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        named = []
    if app_uri not in named:
        return f"its application URI is {named or 'missing'}, the server's is {app_uri!r}"
    return None


def _read_certificate(path: Path, what: str) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"{what}: {path} is not a DER or PEM certificate ({exc})") from exc


def _read_key(path: Path, what: str) -> rsa.RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted; no error text echoes key bytes
        raise CertificateError(f"{what}: {path} is not an unencrypted PEM or DER private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(f"{what}: {path} is not an RSA key (Basic256Sha256 needs one)")
    return key


def _readable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _write_private(path: Path, data: bytes) -> None:
    """Written whole (temporary file, then rename), created 0600: never readable by others, even briefly."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)  # the umask can only have narrowed it; make it exact
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _write_public(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)
