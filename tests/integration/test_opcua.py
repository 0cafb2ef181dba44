"""The OPC UA server read and written through a real asyncua client, the way a PLC or SCADA would."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from conftest import free_port
from cryptography.x509.oid import ExtendedKeyUsageOID
from fixtures_mqtt import wait_until

from app.audit import AuditLog
from app.fleet_audit import audit_every_door
from app.settings import load_settings
from device.commands import Command, CommandResult, SetThreshold
from device.config import LineSettings, OpcUaSettings
from device.opcua import LAST_RESULT, THRESHOLD, OpcUaError, OpcUaServer, PartResult, node_id
from device.runtime import EdgeRuntime
from device.status import LatencyStatus, ModelStatus, RuntimeStatus

pytestmark = pytest.mark.integration

LINE = LineSettings(line_id="line1", station_id="st1")
NAMESPACE = "urn:edgeinspect:test"
OPERATOR = ("op", "operator-secret-1")
VIEWER = ("watcher", "viewer-secret-1")


def make_settings(port: int, **overrides: Any) -> OpcUaSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "endpoint": f"opc.tcp://127.0.0.1:{port}/edgeinspect",
        "namespace_uri": NAMESPACE,
        "operator": {"username": OPERATOR[0], "password": OPERATOR[1]},
        "viewer": {"username": VIEWER[0], "password": VIEWER[1]},
        "status_interval_s": 0.2,
    }
    return OpcUaSettings(**(values | overrides))


def runtime_status(**changes: Any) -> RuntimeStatus:
    status = RuntimeStatus(
        state="running",
        fps=9.5,
        frames=120,
        defects=3,
        dropped_frames=1,
        corrupt_frames=0,
        queue_depth=0,
        threshold=2.0,
        model=ModelStatus(
            id="m1",
            name="patchcore-bracket",
            version="1",
            sha256="ab" * 32,
            calibrated_threshold=2.0,
            input_size=256,
        ),
        broker_connected=True,
        camera_connected=True,
        spool_depth=0,
        latency=LatencyStatus(),
        uptime_s=12.0,
    )
    return status.model_copy(update=changes)


@dataclass
class FakeStation:
    """The runtime's side of the contract: a status snapshot and a command door that records."""

    status: RuntimeStatus = field(default_factory=runtime_status)
    commands: list[tuple[Command, str]] = field(default_factory=list)
    refuse: bool = False

    def snapshot(self) -> RuntimeStatus:
        return self.status

    def execute(self, command: Command, actor: str, /) -> CommandResult:
        self.commands.append((command, actor))
        if self.refuse:
            return CommandResult(ok=False, command=command.command, message="line is locked")
        assert isinstance(command, SetThreshold)
        old, self.status = (
            self.status.threshold,
            self.status.model_copy(update={"threshold": command.threshold}),
        )
        return CommandResult(ok=True, command=command.command, old_value=old, new_value=command.threshold)


# ---- a thin synchronous client ------------------------------------------------------------------
def connect(server: OpcUaServer, login: tuple[str, str] | None = None) -> Client:
    client = Client(server.settings.endpoint, timeout=10)
    if login is not None:
        client.set_user(login[0])
        client.set_password(login[1])
    return client


def read(server: OpcUaServer, *paths: str, login: tuple[str, str] | None = None) -> list[Any]:
    async def go() -> list[Any]:
        async with connect(server, login) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            return [await client.get_node(node_id(ns, path)).read_value() for path in paths]

    return asyncio.run(go())


def write(
    server: OpcUaServer, path: str, variant: ua.Variant, login: tuple[str, str] | None = None
) -> ua.StatusCode:
    """Write one Value and return the per-item status code the server answered."""

    async def go() -> ua.StatusCode:
        async with connect(server, login) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            params = ua.WriteParameters()
            params.NodesToWrite = [
                ua.WriteValue(
                    NodeId=node_id(ns, path), AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(variant)
                )
            ]
            return (await client.uaclient.write(params))[0]

    return asyncio.run(go())


def double(value: float) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.Double)


def login_refusal(server: OpcUaServer, login: tuple[str, str] | None) -> int | None:
    """The status code that refused the session, or None if it was accepted."""

    async def go() -> int | None:
        try:
            async with connect(server, login):
                return None
        except ua.UaStatusCodeError as exc:
            return exc.code

    return asyncio.run(go())


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served() -> Iterator[tuple[OpcUaServer, FakeStation]]:
    station = FakeStation()
    server = OpcUaServer(make_settings(free_port()), LINE, station.snapshot, station.execute)
    server.start()
    try:
        yield server, station
    finally:
        server.stop()


@pytest.fixture
def opcua(served: tuple[OpcUaServer, FakeStation]) -> Iterator[tuple[OpcUaServer, FakeStation]]:
    """The shared server with a fresh station behind it (state restored after each test)."""
    server, station = served
    station.status, station.commands, station.refuse = runtime_status(), [], False
    wait_until(lambda: read(server, THRESHOLD) == [2.0], 10, "threshold back to 2.0")
    yield server, station


# ---- reading -----------------------------------------------------------------------------------
def test_anonymous_reads_state_counters_and_configuration(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, station = opcua
    state, vision_state, frames, defects, dropped, threshold, model = read(
        server,
        "State",
        "VisionStateMachine.CurrentState",
        "Statistics.Frames",
        "Statistics.Defects",
        "Statistics.DroppedFrames",
        THRESHOLD,
        "ConfigurationManagement.ModelName",
    )
    assert (state, vision_state.Text, frames, defects, dropped) == ("running", "Operational", 120, 3, 1)
    assert (threshold, model) == (2.0, "patchcore-bracket")

    station.status = runtime_status(state="paused", frames=130, defects=4)
    wait_until(
        lambda: read(server, "State", "Statistics.Frames") == ["paused", 130], 10, "paused, 130 frames"
    )
    station.status = runtime_status(state="stopped")
    wait_until(lambda: read(server, "VisionStateMachine.CurrentState")[0].Text == "Halted", 10, "Halted")


def test_last_result_and_one_event_per_part(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, _ = opcua
    good = PartResult(frame_id=41, captured_at=time.time() - 0.5, score=0.7, threshold=2.0, is_defect=False)
    bad = PartResult(
        frame_id=42, captured_at=time.time(), score=3.4, threshold=2.0, is_defect=True, defect_class="linear"
    )

    class Events:
        def __init__(self) -> None:
            self.received: list[Any] = []

        def event_notification(self, event: Any) -> None:
            self.received.append(event)

    async def go() -> tuple[list[Any], list[Any]]:
        async with connect(server) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            handler = Events()
            subscription = await client.create_subscription(50, handler)
            event_type = await client.nodes.base_event_type.get_child(f"{ns}:ResultReadyEventType")
            await subscription.subscribe_events(node_id(ns), event_type)
            server.publish_result(good)
            server.publish_result(bad)
            deadline = time.monotonic() + 10
            while len(handler.received) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            names = [
                "ResultId",
                "FrameId",
                "CreationTime",
                "Score",
                "Verdict",
                "IsDefect",
                "DefectClass",
                "Threshold",
            ]
            values = [
                await client.get_node(node_id(ns, f"{LAST_RESULT}.{name}")).read_value() for name in names
            ]
            return handler.received, values

    events, values = asyncio.run(go())
    result_id, frame_id, created, score, verdict, is_defect, defect_class, threshold = values
    assert (result_id, frame_id, verdict, is_defect, defect_class) == (
        "line1/st1/42",
        42,
        "NG",
        True,
        "linear",
    )
    assert (score, threshold) == (pytest.approx(3.4), 2.0)
    assert created.replace(tzinfo=timezone.utc).timestamp() == pytest.approx(bad.captured_at, abs=0.001)
    assert [(e.FrameId, e.Verdict, e.DefectClass) for e in events] == [(41, "OK", ""), (42, "NG", "linear")]
    assert events[1].Severity > events[0].Severity


# ---- writing the threshold ----------------------------------------------------------------------
def test_operator_write_goes_through_the_command_door(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, station = opcua
    assert write(server, THRESHOLD, double(2.5), login=OPERATOR).is_good()
    assert [(c.threshold, actor) for c, actor in station.commands] == [(2.5, "opcua:op")]  # type: ignore[union-attr]
    assert read(server, THRESHOLD, login=VIEWER) == [2.5]


@pytest.mark.parametrize("login", [None, VIEWER], ids=["anonymous", "viewer"])
def test_viewer_and_anonymous_may_not_write(opcua: tuple[OpcUaServer, FakeStation], login: Any) -> None:
    server, station = opcua
    assert write(server, THRESHOLD, double(2.5), login=login).value == ua.StatusCodes.BadUserAccessDenied
    assert (
        write(server, "State", ua.Variant("stopped"), login=login).value == ua.StatusCodes.BadUserAccessDenied
    )
    assert station.commands == []
    assert read(server, THRESHOLD, "State") == [2.0, "running"]


def test_operator_may_write_nothing_but_the_threshold(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, station = opcua
    status = write(server, "Statistics.Frames", ua.Variant(0, ua.VariantType.UInt64), login=OPERATOR)
    assert status.value == ua.StatusCodes.BadUserAccessDenied
    assert read(server, "Statistics.Frames") == [120] and station.commands == []


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (double(-1.0), ua.StatusCodes.BadOutOfRange),
        (double(0.0), ua.StatusCodes.BadOutOfRange),
        (double(math.nan), ua.StatusCodes.BadOutOfRange),
        (double(2e6), ua.StatusCodes.BadOutOfRange),
        (ua.Variant(3, ua.VariantType.Int32), ua.StatusCodes.BadTypeMismatch),
        (ua.Variant("3.0", ua.VariantType.String), ua.StatusCodes.BadTypeMismatch),
        (ua.Variant([2.5, 3.0], ua.VariantType.Double), ua.StatusCodes.BadTypeMismatch),
    ],
    ids=["negative", "zero", "nan", "huge", "int32", "string", "array"],
)
def test_bad_values_are_refused_and_change_nothing(
    opcua: tuple[OpcUaServer, FakeStation], variant: ua.Variant, expected: int
) -> None:
    server, station = opcua
    assert write(server, THRESHOLD, variant, login=OPERATOR).value == expected
    assert station.commands == []
    assert read(server, THRESHOLD) == [2.0]


def test_a_refusal_by_the_runtime_is_a_bad_status(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, station = opcua
    station.refuse = True
    assert write(server, THRESHOLD, double(2.5), login=OPERATOR).value == ua.StatusCodes.BadRequestNotAllowed
    assert len(station.commands) == 1
    assert read(server, THRESHOLD) == [2.0]


# ---- logins -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "login",
    [(OPERATOR[0], "wrong-password"), (VIEWER[0], OPERATOR[1]), ("mallory", OPERATOR[1]), (OPERATOR[0], "")],
    ids=["wrong-password", "other-users-password", "unknown-user", "empty-password"],
)
def test_wrong_credentials_are_refused_at_connect(
    opcua: tuple[OpcUaServer, FakeStation], login: tuple[str, str]
) -> None:
    server, _ = opcua
    assert login_refusal(server, login) == ua.StatusCodes.BadUserAccessDenied
    assert login_refusal(server, OPERATOR) is None


def test_without_anonymous_read_and_with_encryption(tmp_path: Path) -> None:
    """Certificates given: the only endpoint is Basic256Sha256 SignAndEncrypt; anonymous is refused."""
    app_uris = {
        "server": f"urn:edgeinspect:{LINE.line_id}:{LINE.station_id}",
        "client": "urn:edgeinspect:test",
    }
    uses = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}
    for role, use in uses.items():
        asyncio.run(
            setup_self_signed_certificate(
                tmp_path / f"{role}-key.pem",
                tmp_path / f"{role}-cert.der",
                app_uris[role],
                socket.gethostname(),
                [use],
                {"commonName": f"edgeinspect test {role}"},
            )
        )
    certificate = {
        "certificate_file": str(tmp_path / "server-cert.der"),
        "private_key_file": str(tmp_path / "server-key.pem"),
    }
    station = FakeStation()
    settings = make_settings(free_port(), allow_anonymous_read=False, certificate=certificate)
    with OpcUaServer(settings, LINE, station.snapshot, station.execute) as server:

        async def encrypted_write(login: tuple[str, str] | None) -> list[str]:
            client = connect(server, login)
            client.application_uri = app_uris["client"]
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                str(tmp_path / "client-cert.der"),
                str(tmp_path / "client-key.pem"),
                mode=ua.MessageSecurityMode.SignAndEncrypt,
            )
            async with client:
                ns = await client.get_namespace_index(NAMESPACE)
                await client.get_node(node_id(ns, THRESHOLD)).write_value(double(3.0))
                return [e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in await client.get_endpoints()]

        assert asyncio.run(encrypted_write(OPERATOR)) == ["Basic256Sha256"]
        assert [c.threshold for c, _ in station.commands] == [3.0]  # type: ignore[union-attr]
        with pytest.raises(ua.UaStatusCodeError, match="BadIdentityTokenRejected"):
            asyncio.run(encrypted_write(None))  # no anonymous sessions at all
        with pytest.raises(ua.UaError, match="No matching endpoints"):
            login_refusal(server, OPERATOR)  # no plain-text endpoint to send a password to
        assert len(station.commands) == 1


# ---- life cycle ---------------------------------------------------------------------------------
def test_port_in_use_is_a_clear_error_and_stop_frees_the_port() -> None:
    station = FakeStation()
    settings = make_settings(free_port())
    first = OpcUaServer(settings, LINE, station.snapshot, station.execute)
    first.start()
    try:
        second = OpcUaServer(settings, LINE, station.snapshot, station.execute)
        with pytest.raises(
            OpcUaError, match=r"could not start on opc\.tcp://127\.0\.0\.1:\d+/edgeinspect: .*in use"
        ):
            second.start()
        assert login_refusal(first, None) is None  # the first one still serves
    finally:
        first.stop()
    assert not first.running
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # nobody listens there any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a restarted server would
        sock.bind(("127.0.0.1", int(settings.endpoint.rsplit(":", 1)[1].split("/")[0])))
        sock.listen()


# ---- with the real runtime ----------------------------------------------------------------------
@pytest.fixture
def runtime(tmp_path: Path, trained_model: Path, mosquitto: Any) -> Iterator[EdgeRuntime]:
    """The real runtime with `opcua.enabled`: it starts the server itself and feeds it every part."""
    opcua = make_settings(free_port()).model_dump(mode="python")
    for user in ("operator", "viewer"):
        opcua[user]["password"] = opcua[user]["password"].get_secret_value()
    settings = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "camera": {"category": "bracket", "fps": 8, "defect_rate": 0.3},
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-opcua"},
            "opcua": opcua,
        },
    )
    rt = EdgeRuntime(settings)
    rt.start()
    wait_until(
        lambda: rt.worker.latest is not None and rt.worker.latest.result is not None, 30, "a judged frame"
    )
    yield rt
    rt.stop()


@pytest.mark.slow
def test_the_real_runtime_through_opcua(runtime: EdgeRuntime, tmp_path: Path) -> None:
    server = runtime.opcua
    assert server is not None
    audit = AuditLog(tmp_path / "audit.sqlite3")
    audit_every_door(runtime, audit)  # as `edgeinspect run` wires the API's audit log
    # The server starts before the line does (state `starting`), then follows the runtime's state.
    wait_until(lambda: read(server, "State")[0] == "running", 10, "state running")
    frames, threshold = read(server, "Statistics.Frames", THRESHOLD)
    calibrated = runtime.status().model.calibrated_threshold  # type: ignore[union-attr]
    assert frames >= 1 and threshold == pytest.approx(calibrated)

    assert write(server, THRESHOLD, double(calibrated * 2), login=VIEWER).value == (
        ua.StatusCodes.BadUserAccessDenied
    )
    assert runtime.status().threshold == pytest.approx(calibrated)
    assert write(server, THRESHOLD, double(calibrated * 2), login=OPERATOR).is_good()
    assert runtime.status().threshold == pytest.approx(calibrated * 2)
    # The write is in the audit log beside the API's entries: who, through which door, before and after.
    total, rows = audit.query()
    assert total == 1 and rows[0]["actor"] == f"opcua:{OPERATOR[0]}" and rows[0]["role"] == "opcua"
    assert rows[0]["action"] == "set_threshold" and rows[0]["ok"]
    assert rows[0]["old_value"] == pytest.approx(calibrated) and rows[0]["new_value"] == pytest.approx(
        calibrated * 2
    )
    audit.close()
    wait_until(lambda: read(server, THRESHOLD)[0] == pytest.approx(calibrated * 2), 10, "threshold shown")

    # The runtime feeds every judged part: the last result follows the line on its own.
    first = read(server, f"{LAST_RESULT}.FrameId")[0]
    wait_until(lambda: read(server, f"{LAST_RESULT}.FrameId")[0] >= first + 3, 20, "new parts shown")
    assert runtime.worker.latest is not None and runtime.worker.latest.frame.frame_id >= first + 3
