"""The OPC UA pieces that need no server: the part result, the logins and the settings."""

from __future__ import annotations

import numpy as np
import pytest
from asyncua.crypto.permission_rules import UserRole
from pydantic import ValidationError

from app.settings import ConfigError, load_settings
from device.config import OpcUaSettings
from device.station.camera.base import Frame
from device.station.opcua import PartResult
from device.station.opcua.access import StationUser, StationUserManager, station_role
from vision.types import Box, InspectionResult

SETTINGS = OpcUaSettings(
    operator={"username": "op", "password": "operator-secret-1"},
    viewer={"username": "watcher", "password": "viewer-secret-1"},
)


def _frame(frame_id: int = 7) -> Frame:
    image = np.zeros((100, 200, 3), np.uint8)
    return Frame(frame_id=frame_id, captured_at=1_700_000_000.25, captured_mono=1.0, image=image)


def _result(is_defect: bool, boxes: list[Box]) -> InspectionResult:
    return InspectionResult(
        score=3.5 if is_defect else 0.4,
        threshold=2.0,
        is_defect=is_defect,
        boxes=boxes,
        anomaly_map=np.zeros((100, 200), np.float32),
        inference_ms=4.0,
    )


def test_part_result_from_inspection_names_the_defect_like_the_alert_does() -> None:
    scratch = PartResult.from_inspection(_frame(), _result(True, [Box(10, 10, 60, 4, 3.5)]))
    assert (scratch.frame_id, scratch.captured_at, scratch.verdict, scratch.defect_class) == (
        7,
        1_700_000_000.25,
        "NG",
        "linear",
    )
    good = PartResult.from_inspection(_frame(8), _result(False, []))
    assert (good.verdict, good.defect_class, good.score, good.threshold) == ("OK", "", 0.4, 2.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"frame_id": -1, "is_defect": False},
        {"frame_id": 1, "is_defect": True},  # NG needs a class
        {"frame_id": 1, "is_defect": False, "defect_class": "spot"},  # OK has none
    ],
)
def test_inconsistent_part_results_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PartResult(captured_at=0.0, score=1.0, threshold=2.0, **fields)  # type: ignore[arg-type]


def _login(manager: StationUserManager, username: str | None, password: str | None) -> StationUser | None:
    user = manager.get_user(None, username=username, password=password)  # type: ignore[arg-type]
    assert user is None or isinstance(user, StationUser)
    return user


def test_logins_map_to_station_roles() -> None:
    manager = StationUserManager(SETTINGS)
    operator = _login(manager, "op", "operator-secret-1")
    viewer = _login(manager, "watcher", "viewer-secret-1")
    anonymous = _login(manager, None, None)
    assert operator is not None and station_role(operator) == "operator" and operator.role == UserRole.User
    assert viewer is not None and station_role(viewer) == "viewer"
    assert anonymous is not None and station_role(anonymous) == "anonymous"
    assert anonymous.role == UserRole.Anonymous


@pytest.mark.parametrize(
    ("username", "password"),
    [("op", "viewer-secret-1"), ("op", ""), ("op", None), ("root", "operator-secret-1"), (None, "x")],
)
def test_wrong_logins_get_no_user(username: str | None, password: str | None) -> None:
    assert _login(StationUserManager(SETTINGS), username, password) is None


def test_logins_without_a_password_are_off_and_anonymous_can_be_off() -> None:
    manager = StationUserManager(OpcUaSettings(allow_anonymous_read=False))
    assert _login(manager, "operator", "") is None
    assert _login(manager, None, None) is None


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"endpoint": "tcp://127.0.0.1:4840"}, "opcua.endpoint"),
        ({"endpoint": "opc.tcp://127.0.0.1/edgeinspect"}, "opcua.endpoint"),
        ({"certificate": {"certificate_file": "cert.der"}}, "opcua.certificate.private_key_file"),
        ({"status_interval_s": 0}, "opcua.status_interval_s"),
        ({"security_modes": []}, "opcua.security_modes"),
        ({"security_modes": ["Sign", "Sign"]}, "opcua.security_modes"),
        ({"security_modes": ["None"]}, "opcua.security_modes"),
        # a login on a None endpoint that is not offered
        ({"allow_unencrypted_login": True}, "opcua.allow_unencrypted_login"),
        # a None endpoint that nobody may use: no anonymous sessions, no logins on it
        ({"allow_unencrypted": True, "allow_anonymous_read": False}, "opcua.allow_unencrypted_login"),
    ],
)
def test_bad_settings_name_the_field(section: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_settings(None, {"opcua": section})


def test_secure_by_default() -> None:
    """Basic256Sha256 SignAndEncrypt and Sign; no None endpoint and no logins on one unless asked for."""
    opcua = load_settings(None).opcua
    assert opcua.security_modes == ["SignAndEncrypt", "Sign"]
    assert (opcua.allow_unencrypted, opcua.allow_unencrypted_login, opcua.certificate) == (False, False, None)


@pytest.mark.parametrize(
    "section",
    [
        {"allow_unencrypted": True},  # anonymous sessions on it
        {"allow_unencrypted": True, "allow_unencrypted_login": True},
        {"allow_unencrypted": True, "allow_unencrypted_login": True, "allow_anonymous_read": False},
        {"security_modes": ["SignAndEncrypt"]},
    ],
)
def test_relaxations_that_make_sense_are_accepted(section: dict[str, object]) -> None:
    opcua = load_settings(None, {"opcua": section}).opcua
    assert opcua.model_dump(include=set(section)) == section


def test_a_login_relaxation_alone_from_the_environment_fails_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGEINSPECT_OPCUA__ALLOW_UNENCRYPTED_LOGIN", "true")
    with pytest.raises(
        ConfigError, match=r"opcua\.allow_unencrypted_login: .*opcua\.allow_unencrypted is false"
    ):
        load_settings(None)
    monkeypatch.setenv("EDGEINSPECT_OPCUA__ALLOW_UNENCRYPTED", "true")
    assert load_settings(None).opcua.allow_unencrypted_login


def test_a_short_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(None, {"opcua": {"operator": {"username": "op", "password": "hunter2"}}})
    assert "opcua.operator.password" in str(refused.value) and "hunter2" not in str(refused.value)
    with pytest.raises(ValidationError):
        OpcUaSettings(viewer={"username": "bad name!", "password": "viewer-secret-1"})
