"""API keys and roles: who may read the line and who may change it.

Roles are ordered viewer < operator < admin; a key with a higher role may do everything a lower one may.
A key is sent as `X-API-Key: <key>` or `Authorization: Bearer <key>`. The store keeps only the sha256 of
each key and compares digests in constant time, so a key never sits in memory or logs in clear text and
timing does not leak how much of a guess was right.

Endpoint → minimum role (the README copies this table):

| Endpoint                                                              | Role     |
|-----------------------------------------------------------------------|----------|
| `GET /health`, `GET /`, `/static/*`, `GET /docs`, `GET /openapi.json` | none     |
| `GET /auth/whoami`, `GET /status`, `GET /metrics`, `GET /config`      | viewer   |
| `GET /alerts`, `GET /alerts/{id}/thumbnail.jpg`                       | viewer   |
| `GET /frames/latest.jpg`, `GET /frames/stream.mjpeg`, `GET /models`   | viewer   |
| `POST /line/start`, `/line/stop`, `/line/pause`, `/line/resume`       | operator |
| `POST /line/speed`                                                    | operator |
| `POST /inspection/threshold`, `/inspection/threshold/reset`           | operator |
| `POST /inspection/roi`, `DELETE /inspection/roi`                      | operator |
| `POST /inspection/sensitivity`                                        | operator |
| `POST /models`, `POST /models/{id}/activate`, `POST /models/rollback` | admin    |
| `PATCH /config`, `GET /audit`                                         | admin    |

Missing or unknown key: 401. Known key with too low a role: 403. Control endpoints (operator and admin
changes) are also rate limited per key (429 with `Retry-After`). With `auth.enabled: false` every request
is treated as admin; that is for a bench without a network and is logged as a warning at start-up.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.settings import AuthSettings

logger = logging.getLogger(__name__)

GENERATED_KEYS_FILENAME = "api_keys.yaml"


class Role(enum.IntEnum):
    """Ordered so that `principal.role >= Role.operator` reads as the permission check it is."""

    viewer = 1
    operator = 2
    admin = 3


class KeyFileError(ValueError):
    """The keys file is missing, unreadable or malformed; start-up stops with this message."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role. `actor` is what the runtime and the audit log record."""

    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"{self.name} ({self.role.name})"


@dataclass(frozen=True)
class KeyRecord:
    """One key as configured: a name for the audit log, the secret, and its role."""

    name: str
    key: str
    role: Role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse_role(value: Any, where: str) -> Role:
    try:
        return Role[str(value).strip().lower()]
    except KeyError:
        raise KeyFileError(f"{where}: role must be one of viewer, operator, admin (got {value!r})") from None


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or len(key) < 16:
        raise KeyFileError(f"{where}: key must be a string of at least 16 characters")
    return key


def read_keys_file(path: str | Path) -> list[KeyRecord]:
    """Parse a keys file: a YAML/JSON mapping `{key: role}` or a list of `{name, key, role}`."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise KeyFileError(f"cannot read keys file {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise KeyFileError(f"keys file {file} is not valid YAML/JSON: {exc}") from exc
    records: list[KeyRecord] = []
    if isinstance(data, dict):
        for index, (key, role) in enumerate(data.items()):
            parsed_role = _parse_role(role, f"{file} entry {index}")
            records.append(
                KeyRecord(
                    f"{parsed_role.name}-{index}", _check_key(key, f"{file} entry {index}"), parsed_role
                )
            )
    elif isinstance(data, list):
        for index, item in enumerate(data):
            where = f"{file} entry {index}"
            if not isinstance(item, dict) or not {"key", "role"} <= item.keys():
                raise KeyFileError(
                    f"{where}: expected a mapping with 'key' and 'role' (and an optional 'name')"
                )
            role = _parse_role(item["role"], where)
            records.append(
                KeyRecord(
                    str(item.get("name") or f"{role.name}-{index}"), _check_key(item["key"], where), role
                )
            )
    else:
        raise KeyFileError(
            f"keys file {file} must hold a mapping {{key: role}} or a list of {{name, key, role}}"
        )
    if not records:
        raise KeyFileError(f"keys file {file} holds no keys")
    return records


def generate_keys_file(path: str | Path) -> list[KeyRecord]:
    """Write one fresh key per role, readable by the owner only, so a first start is never unprotected."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    records = [KeyRecord(role.name, secrets.token_urlsafe(32), role) for role in Role]
    payload = [{"name": r.name, "key": r.key, "role": r.role.name} for r in records]
    # Create with 0600 from the start: the secret is never readable by others, not even briefly.
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Generated by EdgeInspect: one API key per role. Keep this file private.\n")
        yaml.safe_dump(payload, handle, sort_keys=False)
    os.chmod(file, 0o600)
    return records


class KeyStore:
    """Resolves a presented key to a Principal; holds only sha256 digests of the keys."""

    def __init__(self, records: list[KeyRecord], enabled: bool = True, source: str = "") -> None:
        self.enabled = enabled
        self.source = source
        self._digests: list[tuple[str, Principal]] = [
            (hash_key(r.key), Principal(r.name, r.role)) for r in records
        ]
        if enabled and not self._digests:
            raise KeyFileError("authentication is enabled but no API key is configured")

    @classmethod
    def from_settings(cls, auth: AuthSettings, data_dir: str | Path) -> KeyStore:
        """Keys from the environment/settings and `keys_file`; if none at all, generate (or reuse)
        `<data_dir>/api_keys.yaml` and log where it is."""
        if not auth.enabled:
            logger.warning(
                "!!! API AUTHENTICATION IS DISABLED (auth.enabled=false): anyone who can reach this port "
                "can control the line. Use this only on an isolated bench. !!!"
            )
            return cls([], enabled=False, source="disabled")
        records = [
            KeyRecord(role.name, key.get_secret_value(), role)
            for role, key in (
                (Role.viewer, auth.viewer_key),
                (Role.operator, auth.operator_key),
                (Role.admin, auth.admin_key),
            )
            if key
        ]
        for record in records:
            _check_key(record.key, f"auth.{record.role.name}_key")
        sources = ["settings"] if records else []
        if auth.keys_file:
            records += read_keys_file(auth.keys_file)
            sources.append(str(auth.keys_file))
        if records:
            return cls(records, source=", ".join(sources))
        generated = Path(data_dir) / GENERATED_KEYS_FILENAME
        if generated.exists():
            records = read_keys_file(generated)
            logger.warning("API keys: no key configured, using the generated keys in %s", generated)
        else:
            records = generate_keys_file(generated)
            logger.warning(
                "API keys: no key configured, generated one per role into %s (mode 0600)", generated
            )
        return cls(records, source=str(generated))

    @classmethod
    def from_keys(cls, keys: dict[str, str]) -> KeyStore:
        """Role name -> key; convenient for tests and embedding."""
        return cls([KeyRecord(role, key, Role[role]) for role, key in keys.items()], source="explicit")

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal for `key`, or None. Every stored digest is compared, match or not."""
        if not self.enabled:
            return Principal("anonymous", Role.admin)
        if not key:
            return None
        presented = hash_key(key)
        found: Principal | None = None
        for digest, principal in self._digests:
            if hmac.compare_digest(digest, presented) and found is None:
                found = principal
        return found

    def describe(self) -> str:
        """For the start-up log: how many keys per role, never the keys."""
        if not self.enabled:
            return "authentication disabled"
        counts = {role.name: sum(1 for _, p in self._digests if p.role == role) for role in Role}
        return f"{json.dumps(counts)} from {self.source}"
