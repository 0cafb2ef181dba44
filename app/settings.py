"""The one typed settings model: YAML file, then environment (EDGEINSPECT_SECTION__FIELD), then CLI overrides.

A bad value stops start-up with a message that names the field, e.g. `mqtt.url: must start with mqtt://`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from device.config import RuntimeSettings


class ConfigError(ValueError):
    """Raised with a human-readable list of the bad fields."""


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list, description="Empty: CORS closed.")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Model uploads fit under this.")
    control_rate_per_minute: int = Field(120, ge=1, description="Per key, on control endpoints.")
    stream_fps: float = Field(5.0, gt=0, le=60)


class AuthSettings(BaseModel):
    """API keys per role. Keys come from the environment or a file, never from the repo.

    `keys_file` is a YAML/JSON mapping `{key: role}` or a list of `{name, key, role}`. When no key is
    configured at all, `run` generates one per role into `<data_dir>/api_keys.yaml` (mode 0600)
    and prints where they are.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    keys_file: str | None = None
    viewer_key: str | None = None
    operator_key: str | None = None
    admin_key: str | None = None
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


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        lines.append(f"  {field}: {item['msg']} (got {item.get('input')!r})")
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
