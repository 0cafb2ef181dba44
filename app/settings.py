"""The one typed settings model: YAML file, then environment (EDGEINSPECT_SECTION__FIELD), then CLI overrides.

A bad value stops start-up with a message that names the field, e.g. `mqtt.url: must start with mqtt://`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from device.config import RuntimeSettings


class ConfigError(ValueError):
    """Raised with a human-readable list of the bad fields."""


class ApiSettings(BaseModel):
    """Where the API and panel listen; with `tls_cert_file` + `tls_key_file` (PEM) they serve HTTPS only."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list, description="Empty: CORS closed.")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Model uploads fit under this.")
    control_rate_per_minute: int = Field(120, ge=1, description="Per key, on control endpoints.")
    stream_fps: float = Field(5.0, gt=0, le=60)
    tls_cert_file: str | None = Field(None, description="PEM certificate (leaf first, then intermediates).")
    tls_key_file: str | None = Field(None, description="Unencrypted PEM private key of tls_cert_file.")

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @field_validator("tls_cert_file")
    @classmethod
    def _readable_certificate(cls, value: str | None) -> str | None:
        path = _readable_pem_file(value)
        if path is not None:
            _check_certificate(path)
        return path

    @field_validator("tls_key_file")
    @classmethod
    def _key_of_the_certificate(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = _readable_pem_file(value)
        cert_file = info.data.get("tls_cert_file")  # absent when the certificate itself was refused
        if path is not None and cert_file is not None:
            _check_key_matches(cert_file, path)
        return path

    @model_validator(mode="after")
    def _tls_both_or_neither(self) -> ApiSettings:
        if self.tls_cert_file is None and self.tls_key_file is not None:
            raise ValueError("tls_cert_file is required when tls_key_file is set (HTTPS needs both)")
        if self.tls_key_file is None and self.tls_cert_file is not None:
            raise ValueError("tls_key_file is required when tls_cert_file is set (HTTPS needs both)")
        return self


# TLS file checks for ApiSettings: run when the settings load, so a bad file stops start-up before the
# model is built, with the field's name, instead of killing the server thread on the first request.
def _readable_pem_file(value: str | None) -> str | None:
    """The resolved path of a readable PEM file (relative to the working directory, like auth.keys_file)."""
    if value is None:
        return None
    if not value.strip():
        raise ValueError("must be a file path or unset")
    path = Path(value).expanduser().resolve()
    try:
        content = path.read_bytes()
    except OSError as exc:  # missing, a directory, no permission
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in content:
        raise ValueError(f"{path} is not a PEM file")
    return str(path)


def _check_certificate(cert_file: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=cert_file)  # parses each cert
    except ssl.SSLError as exc:
        raise ValueError(f"{cert_file} holds no valid PEM certificate ({exc.reason})") from exc


class _EncryptedKeyError(ValueError):
    """Raised by the passphrase callback: nobody is there to type one when the box starts."""


def _refuse_passphrase() -> bytes:
    raise _EncryptedKeyError("is encrypted; store it unencrypted (mode 0600): nobody types a passphrase here")


def _check_key_matches(cert_file: str, key_file: str) -> None:
    """Load the pair as the server will (`ssl.SSLContext.load_cert_chain`)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file, _refuse_passphrase)
    except _EncryptedKeyError as exc:
        raise ValueError(f"{key_file} {exc}") from exc
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{key_file} does not match the certificate in {cert_file}") from exc
        raise ValueError(f"{key_file} is not a usable PEM private key ({exc.reason})") from exc


class AuthSettings(BaseModel):
    """API keys per role. Keys come from the environment or a file, never from the repo.

    `keys_file` is a YAML/JSON mapping `{key: role}` or a list of `{name, key, role}`. When no key is
    configured at all, `run` generates one per role into `<data_dir>/api_keys.yaml` (mode 0600)
    and prints where they are.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    keys_file: str | None = None
    # Secret types: a dump, repr or log line shows '**********', never the key.
    viewer_key: SecretStr | None = None
    operator_key: SecretStr | None = None
    admin_key: SecretStr | None = None
    audit_path: str = Field("audit.sqlite3", description="Relative paths are under data_dir.")


class Settings(RuntimeSettings, BaseSettings):
    """Root settings: the runtime's sections plus the API's."""

    model_config = SettingsConfigDict(
        env_prefix="EDGEINSPECT_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    api: ApiSettings = ApiSettings()
    auth: AuthSettings = AuthSettings()

    @model_validator(mode="after")
    def _auth_paths_under_data_dir(self) -> Settings:
        root = Path(self.data_dir)
        if not Path(self.auth.audit_path).is_absolute():
            self.auth.audit_path = str(root / self.auth.audit_path)
        if self.auth.keys_file and not Path(self.auth.keys_file).is_absolute():
            self.auth.keys_file = str(Path(self.auth.keys_file).resolve())
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file (passed as init kwargs) so secrets never need to be in YAML.
        return env_settings, init_settings, file_secret_settings


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _is_secret_field(dotted: str) -> bool:
    """A field whose value must not be echoed in an error message (it may be a real credential)."""
    name = str(dotted).rsplit(".", 1)[-1].lower()
    return name in ("password", "passphrase", "token", "secret") or name.endswith(("_key", "_password"))


def redact_secrets(value: Any) -> Any:
    """`value` with every secret-named entry, at any depth, replaced by "<secret>": an error about a
    mapping (a user given without its name, say) must not print the password inside it."""
    if isinstance(value, dict):
        return {k: "<secret>" if _is_secret_field(k) else redact_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_secrets(v) for v in value)
    return value


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        shown = "<secret>" if _is_secret_field(field) else repr(redact_secrets(item.get("input")))
        lines.append(f"  {field}: {item['msg']} (got {shown})")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load YAML (if given), apply nested `overrides`, then the environment; ConfigError on bad input."""
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        data = loaded
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc
