"""The signed documents of a fleet rollout and the Ed25519 keys that sign them.

A station trusts a release only if its signature verifies with one of the public keys it was configured
with; the signature covers the canonical JSON of every field but `signature` itself, so changing any byte
of the URL, hash, size or policy breaks it. Keys are plain PEM files made by `edgeinspect release keygen`.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, field_validator

StationId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
ReleaseId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")]
PRIVATE_KEY_NAME = "release-signing.key"
PUBLIC_KEY_NAME = "release-signing.pub"


class ManifestError(ValueError):
    """A release document that must not be acted on; the message says why."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """ISO 8601 with a zone (`...Z` or `+00:00`); ValueError otherwise."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone (use ...Z or +00:00)")
    return moment


class SignedDocument(BaseModel):
    """A document whose canonical JSON (all fields but `signature`) is signed with Ed25519."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    signature: str | None = Field(None, description="base64 Ed25519 signature of canonical_bytes().")

    @field_validator("created_at", check_fields=False)
    @classmethod
    def _zoned_time(cls, value: str) -> str:
        parse_time(value)
        return value

    def canonical_bytes(self) -> bytes:
        """Sorted keys, no whitespace, UTF-8: the same document always gives the same bytes."""
        body = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class RolloutPolicy(BaseModel):
    """Who installs the release and when: canaries first; the rest after the plant promotes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    canary: list[StationId] = Field(default_factory=list, description="Install first, without promotion.")
    stations: list[StationId] | None = Field(
        None, description="Everyone else who should install it; None: every station that hears it."
    )
    min_canary_ok: int | None = Field(None, ge=0, description="Canaries that must succeed (default all).")

    def targets(self, station_id: str) -> bool:
        return self.stations is None or station_id in self.stations or station_id in self.canary

    def is_canary(self, station_id: str) -> bool:
        return station_id in self.canary

    def canaries_needed(self) -> int:
        return len(self.canary) if self.min_canary_ok is None else min(self.min_canary_ok, len(self.canary))


class ReleaseManifest(SignedDocument):
    """One model release: where to fetch the file and what it must hash to."""

    schema_version: Literal[1] = 1
    kind: Literal["release"] = "release"
    release_id: ReleaseId
    model_name: str = Field(..., min_length=1, max_length=128)
    model_version: str = Field(..., min_length=1, max_length=64)
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    size: int = Field(..., gt=0)
    url: str = Field(..., max_length=2048)
    created_at: str = Field(default_factory=utc_now)
    policy: RolloutPolicy = RolloutPolicy()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not (value.startswith("http://") or value.startswith("https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class PromoteNotice(SignedDocument):
    """The plant's go-ahead for the non-canary stations of `release_id`."""

    schema_version: Literal[1] = 1
    kind: Literal["promote"] = "promote"
    release_id: ReleaseId
    created_at: str = Field(default_factory=utc_now)


# ---- signing and verifying -----------------------------------------------------------------------
SignedT = TypeVar("SignedT", bound=SignedDocument)


def sign(document: SignedT, key: Ed25519PrivateKey) -> SignedT:
    signature = base64.b64encode(key.sign(document.canonical_bytes())).decode()
    return document.model_copy(update={"signature": signature})


def verify(document: SignedDocument, trusted: list[Ed25519PublicKey]) -> None:
    """Raise `ManifestError` unless `document` is signed by one of `trusted`."""
    if not document.signature:
        raise ManifestError("unsigned: the document carries no signature")
    try:
        raw = base64.b64decode(document.signature, validate=True)
    except ValueError as exc:
        raise ManifestError(f"malformed signature (not base64): {exc}") from exc
    message = document.canonical_bytes()
    for key in trusted:
        try:
            key.verify(raw, message)
            return
        except InvalidSignature:
            continue
    raise ManifestError(
        f"bad signature: it verifies with none of the {len(trusted)} trusted public key(s) "
        "(wrong signing key, or the document was changed after signing)"
    )


# ---- keys ----------------------------------------------------------------------------------------
def generate_keypair(out_dir: str | Path) -> tuple[Path, Path]:
    """Write a new private key (mode 0600, never overwritten) and its public key as PEM; return both."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / PRIVATE_KEY_NAME, out / PUBLIC_KEY_NAME
    if private_path.exists():
        raise ValueError(f"{private_path} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read the signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the trusted public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is a {type(key).__name__}, not an Ed25519 public key")
    return key


def parse_document(payload: bytes, kind: type[SignedT]) -> SignedT:
    """Bytes from MQTT to a typed document; `ManifestError` naming the problem otherwise."""
    from pydantic import ValidationError

    try:
        return kind.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise ManifestError(f"malformed {kind.__name__}: {problems}"[:400]) from exc
