"""The OPC UA server read and written through a real asyncua client, the way a PLC or SCADA would.

Every client below trusts the server's certificate the way a plant client is told to (README): it is given
the certificate file, here the one the server made under its data directory, and connects over
Basic256Sha256 with a certificate of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from fixtures_mqtt import wait_until

from app.audit import AuditLog
from app.fleet_audit import audit_every_door
from app.settings import load_settings
from device.config import LineSettings, OpcUaSettings
from device.station.commands import (
    Command,
    CommandResult,
    PrepareRecipe,
    SaveRecipe,
    SelectRecipe,
    SetThreshold,
)
from device.station.opcua import LAST_RESULT, THRESHOLD, OpcUaError, OpcUaServer, PartResult, node_id
from device.station.opcua.nodes import ACTIVE_RECIPE, CONFIGURATION, PREPARE_RECIPE, SELECT_RECIPE
from device.station.recipes import Recipe
from device.station.runtime import EdgeRuntime
from device.station.status import LatencyStatus, ModelStatus, RuntimeStatus

pytestmark = pytest.mark.integration

LINE = LineSettings(line_id="line1", station_id="st1")
SERVER_URI = "urn:edgeinspect:line1:st1"
CLIENT_URI = "urn:edgeinspect:test-client"
NAMESPACE = "urn:edgeinspect:test"
OPERATOR = ("op", "operator-secret-1")
VIEWER = ("watcher", "viewer-secret-1")
ENCRYPTED = ua.MessageSecurityMode.SignAndEncrypt
SIGNED = ua.MessageSecurityMode.Sign
PLAIN = ua.MessageSecurityMode.None_
_CLIENT_FILES: dict[str, Path] = {}  # the test client's certificate and key (module fixture)


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
        recipe="bracket",
        uptime_s=12.0,
    )
    return status.model_copy(update=changes)


@dataclass
class FakeStation:
    """The runtime's side of the contract: a status snapshot and a command door that records."""

    status: RuntimeStatus = field(default_factory=runtime_status)
    commands: list[tuple[Command, str]] = field(default_factory=list)
    refuse: bool = False
    recipes: tuple[str, ...] = ("bracket", "housing")

    def snapshot(self) -> RuntimeStatus:
        return self.status

    def execute(self, command: Command, actor: str, /) -> CommandResult:
        self.commands.append((command, actor))
        if self.refuse:
            return CommandResult(ok=False, command=command.command, message="line is locked")
        if isinstance(command, SelectRecipe | PrepareRecipe):
            if command.name not in self.recipes:
                return CommandResult(ok=False, command=command.command, message=f"no recipe {command.name!r}")
            if isinstance(command, PrepareRecipe):
                return CommandResult(
                    ok=True, command=command.command, message=f"recipe {command.name!r} ready"
                )
            old, self.status = self.status.recipe, self.status.model_copy(update={"recipe": command.name})
            message = f"recipe {command.name!r} active from the next frame"
            return CommandResult(
                ok=True, command=command.command, old_value=old, new_value=command.name, message=message
            )
        assert isinstance(command, SetThreshold)
        old, self.status = (
            self.status.threshold,
            self.status.model_copy(update={"threshold": command.threshold}),
        )
        return CommandResult(ok=True, command=command.command, old_value=old, new_value=command.threshold)


# ---- a thin synchronous client ------------------------------------------------------------------
@contextlib.asynccontextmanager
async def connect(
    server: OpcUaServer, login: tuple[str, str] | None = None, mode: ua.MessageSecurityMode = ENCRYPTED
) -> AsyncIterator[Client]:
    """A session as a plant client opens one: Basic256Sha256 trusting the server's certificate file."""
    client = Client(server.settings.endpoint, timeout=10)
    client.application_uri = CLIENT_URI
    if login is not None:
        client.set_user(login[0])
        client.set_password(login[1])
    if mode != PLAIN:
        assert server.certificate is not None
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(_CLIENT_FILES["cert"]),
            str(_CLIENT_FILES["key"]),
            server_certificate=str(server.certificate.certificate_file),
            mode=mode,
        )
    async with client:
        yield client


def read(
    server: OpcUaServer,
    *paths: str,
    login: tuple[str, str] | None = None,
    mode: ua.MessageSecurityMode = ENCRYPTED,
) -> list[Any]:
    async def go() -> list[Any]:
        async with connect(server, login, mode) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            return [await client.get_node(node_id(ns, path)).read_value() for path in paths]

    return asyncio.run(go())


def write(
    server: OpcUaServer,
    path: str,
    variant: ua.Variant,
    login: tuple[str, str] | None = None,
    mode: ua.MessageSecurityMode = ENCRYPTED,
) -> ua.StatusCode:
    """Write one Value and return the per-item status code the server answered."""

    async def go() -> ua.StatusCode:
        async with connect(server, login, mode) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            params = ua.WriteParameters()
            params.NodesToWrite = [
                ua.WriteValue(
                    NodeId=node_id(ns, path), AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(variant)
                )
            ]
            return (await client.uaclient.write(params))[0]

    return asyncio.run(go())


def call(
    server: OpcUaServer,
    method: str,
    *arguments: ua.Variant,
    login: tuple[str, str] | None = None,
    object_path: str = CONFIGURATION,
) -> ua.CallMethodResult:
    """Call one method on `object_path` and return the server's whole answer (status, outputs)."""

    async def go() -> ua.CallMethodResult:
        async with connect(server, login) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            request = ua.CallMethodRequest(
                ObjectId=node_id(ns, object_path),
                MethodId=node_id(ns, method),
                InputArguments=list(arguments),
            )
            return (await client.uaclient.call([request]))[0]

    return asyncio.run(go())


def string(value: str) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.String)


def double(value: float) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.Double)


def login_refusal(
    server: OpcUaServer, login: tuple[str, str] | None, mode: ua.MessageSecurityMode = ENCRYPTED
) -> int | None:
    """The status code that refused the session, or None if it was accepted."""

    async def go() -> int | None:
        try:
            async with connect(server, login, mode):
                return None
        except ua.UaStatusCodeError as exc:
            return exc.code

    return asyncio.run(go())


def plain_activation(server: OpcUaServer, login: tuple[str, str] | None) -> int | None:
    """Open a session on a SecurityPolicy None channel whether or not the server offers a None endpoint,
    as a client that ignores the endpoint list would: the server's own answer to the activation."""

    async def go() -> int | None:
        client = Client(server.settings.endpoint, timeout=10)
        await client.connect_socket()
        try:
            await client.send_hello()
            await client.open_secure_channel()
            with contextlib.suppress(ua.UaError):  # "No matching endpoints": the session exists all the same
                await client.create_session()
            try:
                await client.activate_session(*(login or (None, None)))
            except ua.UaStatusCodeError as exc:
                return exc.code
            await client.close_session()
            return None
        finally:
            client.disconnect_socket()

    return asyncio.run(go())


def endpoints(server: OpcUaServer) -> list[ua.EndpointDescription]:
    """GetEndpoints, as every client asks it first (on a None channel, which discovery may always use)."""
    return asyncio.run(Client(server.settings.endpoint, timeout=10).connect_and_get_server_endpoints())


def user_access(server: OpcUaServer, path: str, login: tuple[str, str] | None) -> tuple[set[Any], set[Any]]:
    """(UserAccessLevel, AccessLevel) of one node, as this session reads them."""

    async def go() -> tuple[set[Any], set[Any]]:
        async with connect(server, login) as client:
            node = client.get_node(node_id(await client.get_namespace_index(NAMESPACE), path))
            return await node.get_user_access_level(), await node.get_access_level()

    return asyncio.run(go())


def make_certificate(folder: Path, name: str, app_uri: str, use: x509.ObjectIdentifier) -> dict[str, Path]:
    files = {"cert": folder / f"{name}-cert.der", "key": folder / f"{name}-key.pem"}
    asyncio.run(
        setup_self_signed_certificate(
            files["key"], files["cert"], app_uri, socket.gethostname(), [use], {"commonName": name}
        )
    )
    return files


def server_side(records: list[logging.LogRecord], level: int) -> list[logging.LogRecord]:
    """What the server logged at `level` (the test's own client logs beside it, in this process)."""
    return [
        r
        for r in records
        if r.levelno == level and r.name.startswith(("device.station.opcua", "asyncua.server"))
    ]


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def client_certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The test client's own application certificate (a client needs one for Basic256Sha256)."""
    folder = tmp_path_factory.mktemp("opcua-client")
    _CLIENT_FILES.update(make_certificate(folder, "client", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH))
    yield
    _CLIENT_FILES.clear()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpcUaServer, FakeStation]]:
    station = FakeStation()
    data_dir = tmp_path_factory.mktemp("opcua-data")
    server = OpcUaServer(
        make_settings(free_port()), LINE, station.snapshot, station.execute, data_dir=data_dir
    )
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
    wait_until(
        lambda: read(server, THRESHOLD, ACTIVE_RECIPE) == [2.0, "bracket"], 10, "threshold, recipe back"
    )
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


# ---- recipes -------------------------------------------------------------------------------------
def test_operator_selects_and_prepares_recipes_through_the_command_door(
    opcua: tuple[OpcUaServer, FakeStation],
) -> None:
    server, station = opcua

    async def go() -> tuple[list[Any], list[Any], str]:
        async with connect(server, OPERATOR) as client:  # as a PLC calls a method: outputs, or an exception
            ns = await client.get_namespace_index(NAMESPACE)
            configuration = client.get_node(node_id(ns, CONFIGURATION))
            prepared = await configuration.call_method(node_id(ns, PREPARE_RECIPE), string("housing"))
            selected = await configuration.call_method(node_id(ns, SELECT_RECIPE), string("housing"))
            shown = await client.get_node(node_id(ns, ACTIVE_RECIPE)).read_value()
            return prepared, selected, shown

    prepared, selected, shown = asyncio.run(go())
    assert prepared == [True, "recipe 'housing' ready"]
    assert selected == [True, "recipe 'housing' active from the next frame"]
    assert shown == "housing"  # at once, not only at the next status refresh
    assert [(type(c), c.name, actor) for c, actor in station.commands] == [  # type: ignore[union-attr]
        (PrepareRecipe, "housing", "opcua:op"),
        (SelectRecipe, "housing", "opcua:op"),
    ]
    time.sleep(0.5)  # a few status refreshes: the runtime's status says the same
    assert read(server, ACTIVE_RECIPE, login=VIEWER) == ["housing"]


def test_active_recipe_follows_the_status(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, station = opcua
    assert read(server, ACTIVE_RECIPE) == ["bracket"]
    station.status = runtime_status(recipe=None)  # a station without recipes
    wait_until(lambda: read(server, ACTIVE_RECIPE) == [""], 10, "no active recipe")
    station.status = runtime_status(recipe="housing")  # switched through another door (the API, MQTT)
    wait_until(lambda: read(server, ACTIVE_RECIPE) == ["housing"], 10, "housing active")


@pytest.mark.parametrize("login", [None, VIEWER], ids=["anonymous", "viewer"])
@pytest.mark.parametrize("method", [SELECT_RECIPE, PREPARE_RECIPE], ids=["select", "prepare"])
def test_viewer_and_anonymous_may_not_call_recipe_methods(
    opcua: tuple[OpcUaServer, FakeStation], login: Any, method: str
) -> None:
    server, station = opcua
    result = call(server, method, string("housing"), login=login)
    assert result.StatusCode.value == ua.StatusCodes.BadUserAccessDenied and result.OutputArguments == []
    assert station.commands == []
    assert read(server, ACTIVE_RECIPE) == ["bracket"]


@pytest.mark.parametrize(
    ("arguments", "expected", "argument_result"),
    [
        ([string("")], ua.StatusCodes.BadInvalidArgument, ua.StatusCodes.BadInvalidArgument),
        ([string("two words")], ua.StatusCodes.BadInvalidArgument, ua.StatusCodes.BadInvalidArgument),
        ([string("../etc/passwd")], ua.StatusCodes.BadInvalidArgument, ua.StatusCodes.BadInvalidArgument),
        ([string("x" * 65)], ua.StatusCodes.BadInvalidArgument, ua.StatusCodes.BadInvalidArgument),
        ([ua.Variant(None, ua.VariantType.String)], ua.StatusCodes.BadInvalidArgument, None),
        (
            [ua.Variant(7, ua.VariantType.Int32)],
            ua.StatusCodes.BadInvalidArgument,
            ua.StatusCodes.BadTypeMismatch,
        ),
        (
            [ua.Variant(["housing"], ua.VariantType.String)],
            ua.StatusCodes.BadInvalidArgument,
            ua.StatusCodes.BadTypeMismatch,
        ),
        ([], ua.StatusCodes.BadArgumentsMissing, None),
        ([string("housing"), string("bracket")], ua.StatusCodes.BadTooManyArguments, None),
    ],
    ids=["empty", "space", "path", "too-long", "null", "int32", "array", "missing", "too-many"],
)
def test_bad_recipe_ids_are_refused_and_execute_nothing(
    opcua: tuple[OpcUaServer, FakeStation], arguments: list[ua.Variant], expected: int, argument_result: Any
) -> None:
    server, station = opcua
    for method in (SELECT_RECIPE, PREPARE_RECIPE):
        result = call(server, method, *arguments, login=OPERATOR)
        assert result.StatusCode.value == expected and result.OutputArguments == []
        if argument_result is not None:
            assert [r.value for r in result.InputArgumentResults] == [argument_result]
    assert station.commands == []
    assert read(server, ACTIVE_RECIPE) == ["bracket"]


def test_a_refusal_by_the_runtime_is_ok_false_with_its_message(
    opcua: tuple[OpcUaServer, FakeStation],
) -> None:
    server, station = opcua
    result = call(server, SELECT_RECIPE, string("gearbox"), login=OPERATOR)  # valid name, no such recipe
    assert result.StatusCode.is_good()
    assert [v.Value for v in result.OutputArguments] == [False, "no recipe 'gearbox'"]
    assert [v.VariantType for v in result.OutputArguments] == [ua.VariantType.Boolean, ua.VariantType.String]
    station.refuse = True
    result = call(server, PREPARE_RECIPE, string("housing"), login=OPERATOR)
    assert [v.Value for v in result.OutputArguments] == [False, "line is locked"]
    assert [(c.name, actor) for c, actor in station.commands] == [  # type: ignore[union-attr]
        ("gearbox", "opcua:op"),
        ("housing", "opcua:op"),
    ]
    assert read(server, ACTIVE_RECIPE) == ["bracket"]


def test_recipe_methods_only_on_their_object(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, station = opcua
    result = call(server, SELECT_RECIPE, string("housing"), login=OPERATOR, object_path="Statistics")
    assert result.StatusCode.value == ua.StatusCodes.BadMethodInvalid
    assert station.commands == []


@pytest.mark.parametrize(
    ("login", "may_call"),
    [(None, False), (VIEWER, False), (OPERATOR, True)],
    ids=["anonymous", "viewer", "operator"],
)
def test_recipe_methods_as_a_client_browses_them(
    opcua: tuple[OpcUaServer, FakeStation], login: tuple[str, str] | None, may_call: bool
) -> None:
    server, _ = opcua

    async def go() -> tuple[list[Any], list[Any], list[Any]]:
        async with connect(server, login) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            configuration = client.get_node(node_id(ns, CONFIGURATION))
            methods = await configuration.get_methods()
            executable = [
                (
                    (await method.read_attribute(ua.AttributeIds.Executable)).Value.Value,
                    (await method.read_attribute(ua.AttributeIds.UserExecutable)).Value.Value,
                )
                for method in methods
            ]
            arguments = []
            for path in (SELECT_RECIPE, PREPARE_RECIPE):
                for kind in ("InputArguments", "OutputArguments"):
                    node = client.get_node(node_id(ns, f"{path}.{kind}"))
                    name = (await node.read_browse_name()).to_string()
                    values = await node.read_value()
                    arguments.append((name, [(a.Name, a.DataType.Identifier, a.ValueRank) for a in values]))
            return [m.nodeid for m in methods], executable, arguments

    method_ids, executable, arguments = asyncio.run(go())
    ns = server.namespace_index
    assert ns is not None
    assert sorted(method_ids, key=str) == sorted(
        [node_id(ns, PREPARE_RECIPE), node_id(ns, SELECT_RECIPE)], key=str
    )
    assert executable == [(True, may_call)] * 2  # the server may run them; this session may call them, or not
    inputs = ("0:InputArguments", [("RecipeId", ua.ObjectIds.String, -1)])
    outputs = ("0:OutputArguments", [("Ok", ua.ObjectIds.Boolean, -1), ("Message", ua.ObjectIds.String, -1)])
    assert arguments == [inputs, outputs] * 2


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


def test_a_configured_certificate_and_no_anonymous_sessions(tmp_path: Path) -> None:
    """`opcua.certificate` given (a plant CA's, say): it is the one served, nothing is generated, and
    without `allow_anonymous_read` an anonymous session is refused on the secure endpoint too."""
    files = make_certificate(tmp_path, "server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH)
    certificate = {"certificate_file": str(files["cert"]), "private_key_file": str(files["key"])}
    station = FakeStation()
    settings = make_settings(
        free_port(), allow_anonymous_read=False, certificate=certificate, security_modes=["SignAndEncrypt"]
    )
    data_dir = tmp_path / "data"
    with OpcUaServer(settings, LINE, station.snapshot, station.execute, data_dir=data_dir) as server:
        assert server.certificate is not None and server.certificate.origin == "configured"
        assert server.certificate.certificate_file == files["cert"]
        offered = endpoints(server)
        assert [(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in offered] == [
            ("Basic256Sha256", ENCRYPTED)
        ]
        assert offered[0].ServerCertificate == files["cert"].read_bytes()
        assert [t.TokenType for t in offered[0].UserIdentityTokens] == [ua.UserTokenType.UserName]

        assert write(server, THRESHOLD, double(3.0), login=OPERATOR).is_good()
        assert [c.threshold for c, _ in station.commands] == [3.0]  # type: ignore[union-attr]
        assert login_refusal(server, None) == ua.StatusCodes.BadIdentityTokenRejected
    assert not (data_dir / "opcua").exists()


def test_a_configured_certificate_must_name_this_station(tmp_path: Path) -> None:
    files = make_certificate(
        tmp_path, "other", "urn:edgeinspect:line1:other", ExtendedKeyUsageOID.SERVER_AUTH
    )
    certificate = {"certificate_file": str(files["cert"]), "private_key_file": str(files["key"])}
    station = FakeStation()
    server = OpcUaServer(
        make_settings(free_port(), certificate=certificate),
        LINE,
        station.snapshot,
        station.execute,
        data_dir=tmp_path,
    )
    with pytest.raises(OpcUaError, match=r"opcua\.certificate\.certificate_file .*urn:edgeinspect:line1:st1"):
        server.start()


# ---- secure by default --------------------------------------------------------------------------
def test_only_basic256sha256_endpoints_by_default(opcua: tuple[OpcUaServer, FakeStation]) -> None:
    server, station = opcua
    offered = endpoints(server)
    assert {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in offered} == {
        ("Basic256Sha256", ENCRYPTED),
        ("Basic256Sha256", SIGNED),
    }
    assert server.certificate is not None
    assert {e.ServerCertificate for e in offered} == {server.certificate.certificate_file.read_bytes()}
    assert {e.Server.ApplicationUri for e in offered} == {SERVER_URI}
    served_cert = x509.load_der_x509_certificate(offered[0].ServerCertificate)
    san = served_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER_URI]
    # On the Sign endpoint the password is still encrypted, with the server's certificate.
    signed = next(e for e in offered if e.SecurityMode == SIGNED)
    username = next(t for t in signed.UserIdentityTokens if t.TokenType == ua.UserTokenType.UserName)
    assert username.SecurityPolicyUri == SecurityPolicyBasic256Sha256.URI

    for mode, value in ((ENCRYPTED, 2.5), (SIGNED, 2.75)):
        assert write(server, THRESHOLD, double(value), login=OPERATOR, mode=mode).is_good()
    assert [(c.threshold, actor) for c, actor in station.commands] == [  # type: ignore[union-attr]
        (2.5, "opcua:op"),
        (2.75, "opcua:op"),
    ]


def test_security_policy_none_is_refused_by_default(
    opcua: tuple[OpcUaServer, FakeStation], caplog: pytest.LogCaptureFixture
) -> None:
    server, station = opcua
    with pytest.raises(ua.UaError, match="No matching endpoints"):  # a client that reads the endpoints
        read(server, THRESHOLD, mode=PLAIN)
    caplog.clear()
    # A client that ignores them is refused by the server itself, anonymous or with a password.
    assert plain_activation(server, None) == ua.StatusCodes.BadSecurityModeRejected
    assert plain_activation(server, OPERATOR) == ua.StatusCodes.BadSecurityModeRejected
    warnings = [r.getMessage() for r in server_side(caplog.records, logging.WARNING)]
    assert len(warnings) == 2 and all("opcua.allow_unencrypted" in w for w in warnings), warnings
    assert "user 'op' from 127.0.0.1:" in warnings[1] and OPERATOR[1] not in warnings[1]
    assert station.commands == []


def test_security_policy_none_only_where_the_settings_allow_it(tmp_path: Path) -> None:
    station = FakeStation()
    anonymous_only = make_settings(free_port(), allow_unencrypted=True)
    with OpcUaServer(anonymous_only, LINE, station.snapshot, station.execute, data_dir=tmp_path) as server:
        plain = [e for e in endpoints(server) if e.SecurityMode == PLAIN]
        assert [[t.TokenType for t in e.UserIdentityTokens] for e in plain] == [[ua.UserTokenType.Anonymous]]
        assert read(server, THRESHOLD, mode=PLAIN) == [2.0]
        assert login_refusal(server, OPERATOR, mode=PLAIN) == ua.StatusCodes.BadIdentityTokenRejected
        assert plain_activation(server, VIEWER) == ua.StatusCodes.BadIdentityTokenRejected
        assert write(server, THRESHOLD, double(2.5), login=OPERATOR).is_good()  # secure endpoints as ever

    with_logins = make_settings(free_port(), allow_unencrypted=True, allow_unencrypted_login=True)
    with OpcUaServer(with_logins, LINE, station.snapshot, station.execute, data_dir=tmp_path) as server:
        plain = [e for e in endpoints(server) if e.SecurityMode == PLAIN]
        tokens = {t.TokenType: t.SecurityPolicyUri for t in plain[0].UserIdentityTokens}
        assert tokens[ua.UserTokenType.UserName] == SecurityPolicyBasic256Sha256.URI  # password encrypted
        assert write(server, THRESHOLD, double(3.0), login=OPERATOR, mode=PLAIN).is_good()
        assert write(server, THRESHOLD, double(3.5), login=VIEWER, mode=PLAIN).value == (
            ua.StatusCodes.BadUserAccessDenied
        )
    assert [c.threshold for c, _ in station.commands] == [2.5, 3.0]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("login", "may_write"),
    [(None, False), (VIEWER, False), (OPERATOR, True)],
    ids=["anonymous", "viewer", "operator"],
)
def test_user_access_level_is_per_session(
    opcua: tuple[OpcUaServer, FakeStation], login: tuple[str, str] | None, may_write: bool
) -> None:
    server, _ = opcua
    user_level, level = user_access(server, THRESHOLD, login)
    assert level == {ua.AccessLevel.CurrentRead, ua.AccessLevel.CurrentWrite}  # the node is writable...
    expected = {ua.AccessLevel.CurrentRead} | ({ua.AccessLevel.CurrentWrite} if may_write else set())
    assert user_level == expected  # ...by this session, or not
    assert user_access(server, "State", login) == ({ua.AccessLevel.CurrentRead}, {ua.AccessLevel.CurrentRead})


@pytest.mark.parametrize(
    ("login", "mode"),
    [((OPERATOR[0], "wrong-password"), ENCRYPTED), (("mallory", OPERATOR[1]), SIGNED), (None, ENCRYPTED)],
    ids=["wrong-password", "unknown-user", "anonymous-off"],
)
def test_a_refused_login_is_one_warning_and_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, login: tuple[str, str] | None, mode: Any
) -> None:
    station = FakeStation()
    settings = make_settings(free_port(), allow_anonymous_read=False)
    with OpcUaServer(settings, LINE, station.snapshot, station.execute, data_dir=tmp_path) as server:
        caplog.clear()
        assert login_refusal(server, login, mode) in (
            ua.StatusCodes.BadUserAccessDenied,
            ua.StatusCodes.BadIdentityTokenRejected,
        )
        warnings = server_side(caplog.records, logging.WARNING)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert message.startswith("OPC UA login refused: ") and " from 127.0.0.1:" in message
    if login is None:
        assert "anonymous" in message and "opcua.allow_anonymous_read" in message
    else:
        assert repr(login[0]) in message and login[1] not in message


def test_the_certificate_is_made_once_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    station = FakeStation()
    settings = make_settings(free_port())
    caplog.set_level(logging.INFO, logger="device.station.opcua")
    seen = []
    for _ in range(2):
        with OpcUaServer(settings, LINE, station.snapshot, station.execute, data_dir=tmp_path) as server:
            assert server.certificate is not None
            seen.append((server.certificate.origin, server.certificate.sha1, server.certificate.sha256))
            assert read(server, THRESHOLD, login=VIEWER) == [2.0]  # a client trusting the file connects
    (first, sha1, sha256), (second, *again) = seen
    assert (first, second) == ("generated", "reused") and again == [sha1, sha256]
    key, cert = tmp_path / "opcua" / "server-key.pem", tmp_path / "opcua" / "server-cert.der"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "opcua").stat().st_mode) == 0o700
    assert x509.load_der_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256()).hex() == (
        sha256.replace(":", "").lower()
    )
    logged = caplog.text
    assert sha1 in logged and sha256 in logged  # the thumbprints are logged at every start...
    pem = key.read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert "PRIVATE KEY" not in logged and body[:40] not in logged  # ...the key never is
    private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= 2048


# ---- life cycle ---------------------------------------------------------------------------------
def test_port_in_use_is_a_clear_error_and_stop_frees_the_port(tmp_path: Path) -> None:
    station = FakeStation()
    settings = make_settings(free_port())
    first = OpcUaServer(settings, LINE, station.snapshot, station.execute, data_dir=tmp_path)
    first.start()
    try:
        second = OpcUaServer(settings, LINE, station.snapshot, station.execute, data_dir=tmp_path)
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
    assert server is not None and server.certificate is not None
    # Its own certificate, made under the runtime's data directory (clients below trust that file).
    assert server.certificate.certificate_file == tmp_path.resolve() / "opcua" / "server-cert.der"
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

    # Recipes: the PLC switches product over OPC UA, through the same door.
    model_id = runtime.models.list()[0].id
    for name, threshold in (("bracket", calibrated), ("housing", calibrated * 1.5)):
        saved = runtime.execute(SaveRecipe(recipe=Recipe(name=name, model_id=model_id, threshold=threshold)))
        assert saved.ok, saved.message
    assert runtime.status().recipe is None and read(server, ACTIVE_RECIPE) == [""]
    assert call(server, SELECT_RECIPE, string("housing"), login=VIEWER).StatusCode.value == (
        ua.StatusCodes.BadUserAccessDenied
    )
    prepared = call(server, PREPARE_RECIPE, string("housing"), login=OPERATOR)
    assert prepared.StatusCode.is_good() and prepared.OutputArguments[0].Value, prepared
    selected = call(server, SELECT_RECIPE, string("housing"), login=OPERATOR)
    assert selected.StatusCode.is_good() and selected.OutputArguments[0].Value, selected
    assert "housing" in selected.OutputArguments[1].Value
    wait_until(lambda: runtime.status().recipe == "housing", 30, "housing active in the runtime")
    wait_until(lambda: read(server, ACTIVE_RECIPE) == ["housing"], 30, "housing shown")
    wait_until(lambda: read(server, THRESHOLD)[0] == pytest.approx(calibrated * 1.5), 30, "its threshold")
    unknown = call(server, SELECT_RECIPE, string("gearbox"), login=OPERATOR)  # refused by the runtime
    assert unknown.StatusCode.is_good() and unknown.OutputArguments[0].Value is False
    assert "gearbox" in unknown.OutputArguments[1].Value
    assert runtime.status().recipe == "housing"
