"""GET /config is built from an allow-list: secrets and paths stay out, new fields start out private."""

from __future__ import annotations

import json

import pytest

from app.settings import Settings
from device.config import PRIVATE_FIELDS, PUBLIC_FIELDS, RuntimeSettings, public_view, redact_url


def test_every_runtime_field_is_classified_public_or_private() -> None:
    """Adding a setting forces a decision about whether viewers may read it."""
    sections = {name for name in RuntimeSettings.model_fields if name != "data_dir"}
    assert set(PUBLIC_FIELDS) | set(PRIVATE_FIELDS) == sections
    for section in sections:
        model = RuntimeSettings.model_fields[section].annotation
        assert model is not None
        fields = set(model.model_fields)  # type: ignore[union-attr]
        public, private = set(PUBLIC_FIELDS.get(section, ())), set(PRIVATE_FIELDS.get(section, ()))
        assert not public & private, f"{section}: both public and private: {public & private}"
        assert public | private == fields, f"{section}: unclassified {fields - public - private}"


def test_the_view_holds_no_secret_and_no_api_section(tmp_path) -> None:
    settings = Settings(
        data_dir=str(tmp_path),
        camera={"source": "rtsp://cam:cam-pass-123@10.0.0.9:554/stream"},
        mqtt={"url": "mqtt://127.0.0.1:1883", "username": "u", "password": "mqtt-pass-456"},
        auth={"admin_key": "admin-key-789", "operator_key": "op-key-012", "viewer_key": "view-key-345"},
    )
    text = json.dumps(public_view(settings, threshold=1.25))
    for secret in ("cam-pass-123", "mqtt-pass-456", "admin-key-789", "op-key-012", "view-key-345"):
        assert secret not in text
    view = json.loads(text)
    assert "auth" not in view and "api" not in view and "data_dir" not in view
    assert view["camera"]["source"] == "rtsp://cam:***@10.0.0.9:554/stream"
    assert view["inspection"]["threshold"] == 1.25 and view["mqtt"]["username"] == "u"
    assert "admin-key-789" not in repr(settings) and "mqtt-pass-456" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://a:b@h/x", "rtsp://a:***@h/x"),
        ("http://h:8080/x", "http://h:8080/x"),
        ("simulator", "simulator"),
        ("0", "0"),
        ("gst:videotestsrc ! appsink", "gst:videotestsrc ! appsink"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
