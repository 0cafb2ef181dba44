"""The settings model: YAML + environment + overrides, and start-up errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[3]


def test_default_config_loads_and_puts_state_under_data_dir(tmp_path: Path) -> None:
    settings = load_settings(REPO / "configs" / "default.yaml", {"data_dir": str(tmp_path)})
    assert settings.camera.source == "simulator"
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert Path(settings.outbox.path) == tmp_path / "outbox.sqlite3"
    assert Path(settings.model.path) == tmp_path / "models" / "default.onnx"
    assert Path(settings.auth.audit_path) == tmp_path / "audit.sqlite3"


def test_revalidation_keeps_paths_stable(tmp_path: Path) -> None:
    settings = load_settings(None, {"data_dir": str(tmp_path)})
    again = type(settings).model_validate(settings.model_dump())
    assert again.outbox.path == settings.outbox.path


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"mqtt": {"url": "http://broker:1883"}}, "mqtt.url"),
        ({"camera": {"fps": 0}}, "camera.fps"),
        ({"camera": {"queue_size": "many"}}, "camera.queue_size"),
        ({"line": {"line_id": "line 1/#"}}, "line.line_id"),
        ({"api": {"port": 70000}}, "api.port"),
        ({"inspection": {"unknown_knob": 1}}, "inspection.unknown_knob"),
    ],
)
def test_bad_values_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, override)
    assert field in str(excinfo.value)


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  url: mqtt://127.0.0.1:1883\n")
    monkeypatch.setenv("EDGEINSPECT_MQTT__URL", "mqtt://10.0.0.5:1884")
    monkeypatch.setenv("EDGEINSPECT_AUTH__OPERATOR_KEY", "from-env")
    settings = load_settings(config)
    assert settings.mqtt.url == "mqtt://10.0.0.5:1884"
    assert settings.auth.operator_key is not None
    assert settings.auth.operator_key.get_secret_value() == "from-env"


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(scalar)


def test_a_password_alone_from_the_environment_logs_in_the_default_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's example: only EDGEINSPECT_OPCUA__OPERATOR__PASSWORD set; the user name is the default."""
    monkeypatch.setenv("EDGEINSPECT_OPCUA__OPERATOR__PASSWORD", "operator-secret-123")
    monkeypatch.setenv("EDGEINSPECT_OPCUA__VIEWER__PASSWORD", "viewer-secret-456")
    opcua = load_settings(None).opcua
    assert opcua.operator.username == "operator" and opcua.viewer.username == "viewer"
    assert opcua.operator.password is not None
    assert opcua.operator.password.get_secret_value() == "operator-secret-123"


def test_no_secret_in_any_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused mapping is echoed with its secrets masked, whatever field the error is about."""
    monkeypatch.setenv("EDGEINSPECT_OPCUA__OPERATOR__PASSWORD", "short")  # too short: refused
    monkeypatch.setenv("EDGEINSPECT_OPCUA__VIEWER__USERNAME", "not a valid name!")
    monkeypatch.setenv("EDGEINSPECT_OPCUA__VIEWER__PASSWORD", "viewer-secret-456")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(
            None,
            {
                "mqtt": {"password": "mqtt-secret-789", "url": "http://wrong"},
                # "certificate_file: Field required" echoes the whole mapping, password and all
                "opcua": {"certificate": {"private_key_file": "k.pem", "password": "cert-secret-000"}},
            },
        )
    message = str(excinfo.value)
    assert "opcua.operator.password" in message and "opcua.viewer.username" in message
    assert "opcua.certificate.certificate_file" in message and "<secret>" in message
    for secret in ("short", "viewer-secret-456", "mqtt-secret-789", "cert-secret-000"):
        assert secret not in message, message
