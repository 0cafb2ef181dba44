"""`OpcUaServer`: asyncua's server on its own thread and event loop, behind synchronous start()/stop().

The runtime is threaded, so this class is the bridge: `publish_result` may be called from the inspection
thread at line rate (it only queues and wakes the loop), state and counters are polled from the status
provider every `status_interval_s`, and an operator's threshold write is turned into
`SetThreshold` through the runtime's `execute` (run in a worker thread, never on the loop).

The recipe methods (`ConfigurationManagement.SelectRecipe` / `PrepareRecipe`, `nodes.py`) go through the
same door as `SelectRecipe` / `PrepareRecipe` commands, operator only. The call's status code says whether
the request itself was acceptable: BadUserAccessDenied for any other session, BadArgumentsMissing /
BadTooManyArguments, BadInvalidArgument for a RecipeId that is not a String (its input result
BadTypeMismatch) or not a valid recipe name (nothing is executed then), BadInternalError if `execute`
raised. Once the runtime has been asked, the call is Good and its outputs carry the answer: `Ok` false with
the runtime's `Message` when it refused (an unknown recipe, a model that will not load), so a PLC tells a
refusal from a broken request without decoding status codes.

Endpoints: Basic256Sha256 in each of `security_modes`, with the configured certificate or the station's own
(`certificate.py`); a SecurityPolicy None endpoint only with `allow_unencrypted`, offering a login only with
`allow_unencrypted_login` (`StationServer`, and `access.StationSession` enforces both per session).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

from asyncua import ua
from asyncua.crypto.permission_rules import User
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256, SecurityPolicyNone
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from pydantic import ValidationError

from device.config import LineSettings, OpcUaSettings
from device.station.commands import PrepareRecipe, SelectRecipe, SetThreshold
from device.station.opcua import certificate as certificates
from device.station.opcua.access import (
    GuardedAttributeService,
    PlainChannels,
    StationInternalServer,
    StationRuleset,
    call_result,
    quiet_logged_refusals,
    station_role,
    status,
)
from device.station.opcua.contract import CommandExecutor, PartResult, StatusProvider
from device.station.opcua.nodes import (
    ACTIVE_RECIPE,
    CONFIGURATION,
    PREPARE_RECIPE,
    SELECT_RECIPE,
    THRESHOLD,
    StationNodes,
    build_address_space,
    node_id,
)

log = logging.getLogger(__name__)

PENDING_RESULTS_MAX = 1000  # results waiting for the loop; beyond this the oldest are dropped
_SECURE_POLICIES = {
    "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
}


class OpcUaError(RuntimeError):
    """The OPC UA server could not start (port taken, bad certificate, ...)."""


class StationServer(Server):
    """asyncua's server, with a SecurityPolicy None endpoint only where `plain_tokens` names what may log in
    on it (asyncua would offer it every token, a user name with a password too)."""

    plain_tokens: tuple[ua.UserTokenType, ...] = ()  # empty: no None endpoint

    async def _setup_server_nodes(self) -> None:
        await super()._setup_server_nodes()  # the secure endpoints, from set_security_policy
        if not self.plain_tokens:
            return
        endpoint = ua.EndpointDescription(
            EndpointUrl=self.endpoint.geturl(),
            Server=self.iserver.endpoints[0].Server,
            ServerCertificate=self.iserver.endpoints[0].ServerCertificate,
            SecurityMode=ua.MessageSecurityMode.None_,
            SecurityPolicyUri=SecurityPolicyNone.URI,
            UserIdentityTokens=[_token_policy(kind) for kind in self.plain_tokens],
            TransportProfileUri=self.iserver.endpoints[0].TransportProfileUri,
            SecurityLevel=ua.Byte(0),
        )
        self.iserver.add_endpoint(endpoint)
        self._policies.append(
            PlainChannels(  # type: ignore[no-untyped-call]  # asyncua leaves it unannotated
                SecurityPolicyNone,
                ua.MessageSecurityMode.None_,
                self.iserver.certificate,
                self.iserver.private_key,
                permission_ruleset=self._permission_ruleset,
            )
        )


def _token_policy(kind: ua.UserTokenType) -> ua.UserTokenPolicy:
    """A None endpoint's token: a password is encrypted with the server's certificate (Basic256Sha256)."""
    if kind == ua.UserTokenType.UserName:
        return ua.UserTokenPolicy(
            PolicyId="username", TokenType=kind, SecurityPolicyUri=SecurityPolicyBasic256Sha256.URI
        )
    return ua.UserTokenPolicy(PolicyId="anonymous", TokenType=kind, SecurityPolicyUri=SecurityPolicyNone.URI)


class OpcUaServer:
    def __init__(
        self,
        settings: OpcUaSettings,
        line: LineSettings,
        status: StatusProvider,
        execute: CommandExecutor,
        *,
        data_dir: str | Path,
        start_timeout_s: float = 60.0,
    ) -> None:
        """`data_dir`: where the server's own certificate and key live (`<data_dir>/opcua/`) when
        `settings.certificate` names none."""
        self.settings = settings
        self._line = line
        self._data_dir = Path(data_dir)
        self.certificate: certificates.ServerCertificate | None = None
        self._status = status
        self._execute = execute
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._pending: deque[PartResult] = deque(maxlen=PENDING_RESULTS_MAX)
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._nodes: StationNodes | None = None
        self._last_status_error: str | None = None
        self.dropped_results = 0
        self.namespace_index: int | None = None

    # ---- life cycle (any thread) ---------------------------------------------------------------
    def start(self) -> None:
        """Serve on `settings.endpoint`; returns once clients can connect, raises OpcUaError otherwise."""
        if self._thread is not None:
            raise OpcUaError("OpcUaServer.start() called twice")
        if logging.getLogger("asyncua").level == logging.NOTSET:
            logging.getLogger("asyncua").setLevel(logging.WARNING)  # per-session INFO chatter otherwise
        quiet_logged_refusals()
        self.certificate = self._load_certificate()
        if self.certificate.origin == "generated":  # clients must trust it (once), so say so loudly
            log.warning("OPC UA server certificate made: %s", self.certificate.describe())
        else:
            log.info("OPC UA server certificate %s", self.certificate.describe())
        self._warn_if_unencrypted()
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            self.stop()
            raise OpcUaError(f"OPC UA server did not start within {self._start_timeout_s:.0f} s")
        if self._startup_error is not None:
            self._thread.join(timeout=5)
            raise OpcUaError(
                f"OPC UA server could not start on {self.settings.endpoint}: {self._startup_error}"
            ) from self._startup_error
        log.info("OPC UA server listening on %s (%s)", self.settings.endpoint, self.security_mode)

    def stop(self) -> None:
        """Close every session and the socket; idempotent, returns within a second or two."""
        self._stopping = True
        self._wake_loop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                log.warning("OPC UA server thread did not stop within 10 s")

    def __enter__(self) -> OpcUaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._ready.is_set() and self._startup_error is None and not self._stopping

    @property
    def security_mode(self) -> str:
        """The endpoints offered, e.g. `Basic256Sha256 SignAndEncrypt, Basic256Sha256 Sign`."""
        modes = [f"Basic256Sha256 {mode}" for mode in self.settings.security_modes]
        if self.settings.allow_unencrypted:
            logins = "anonymous and logins" if self.settings.allow_unencrypted_login else "anonymous only"
            if not self.settings.allow_anonymous_read:
                logins = "logins only"
            modes.append(f"None ({logins})")
        return ", ".join(modes)

    @property
    def application_uri(self) -> str:
        return certificates.application_uri(self._line.line_id, self._line.station_id)

    def _load_certificate(self) -> certificates.ServerCertificate:
        """The configured certificate, or the station's own (made on first enable, reused after)."""
        configured = self.settings.certificate
        try:
            if configured is not None:
                return certificates.load_configured(
                    configured.certificate_file, configured.private_key_file, self.application_uri
                )
            return certificates.load_or_generate(
                self._data_dir / certificates.GENERATED_DIR,
                self.application_uri,
                certificates.endpoint_hosts(urlsplit(self.settings.endpoint).hostname),
            )
        except (certificates.CertificateError, OSError) as exc:
            raise OpcUaError(f"OPC UA server certificate: {exc}") from exc

    def _warn_if_unencrypted(self) -> None:
        settings = self.settings
        if not settings.allow_unencrypted or _is_loopback(settings.endpoint):
            return
        what = "sessions, logged-in ones too," if settings.allow_unencrypted_login else "anonymous sessions"
        log.warning(
            "OPC UA endpoint %s also offers SecurityPolicy None (opcua.allow_unencrypted): %s travel "
            "unsigned and unencrypted on the network",
            settings.endpoint,
            what,
        )

    # ---- the result feed (inspection thread) ---------------------------------------------------
    def publish_result(self, result: PartResult) -> None:
        """Queue one judged part for `LastResult` and a `ResultReady` event; never blocks the caller."""
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped_results += 1  # the loop is far behind: the oldest part's event is lost
            self._pending.append(result)
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        self._wake_loop()

    def _wake_loop(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has just closed: nothing left to wake
            loop.call_soon_threadsafe(wake.set)

    # ---- the loop (opcua thread) ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() or logged: the thread must end either way
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                log.exception("OPC UA server stopped on an error")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        server = await self._create_server()
        await server.start()
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        try:
            await self._serve()
        finally:
            await self._shutdown(server)

    async def _create_server(self) -> Server:
        settings = self.settings
        iserver = StationInternalServer(settings)
        server = StationServer(iserver=iserver)
        attributes = GuardedAttributeService(server.iserver.aspace)
        server.iserver.attribute_service = attributes
        await server.init()
        line, station = self._line.line_id, self._line.station_id
        server.set_endpoint(settings.endpoint)
        server.set_server_name(f"EdgeInspect {line}/{station}")
        server.product_uri = "urn:edgeinspect"
        await server.set_application_uri(self.application_uri)
        self._configure_security(server)
        ns = await server.register_namespace(settings.namespace_uri)
        self.namespace_index = ns
        self._nodes = await build_address_space(server, ns, f"EdgeInspect {line}/{station}", line, station)
        attributes.add_guard(node_id(ns, THRESHOLD), self._write_threshold)
        iserver.methods.add_guard(node_id(ns, CONFIGURATION), node_id(ns, SELECT_RECIPE), self._select_recipe)
        iserver.methods.add_guard(
            node_id(ns, CONFIGURATION), node_id(ns, PREPARE_RECIPE), self._prepare_recipe
        )
        await self._refresh_status()
        return server

    def _configure_security(self, server: StationServer) -> None:
        settings = self.settings
        assert self.certificate is not None
        server.iserver.certificate = self.certificate.certificate
        server.iserver.private_key = self.certificate.private_key
        tokens: list[type] = [ua.UserNameIdentityToken]
        if settings.allow_anonymous_read:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.set_security_policy(
            [_SECURE_POLICIES[mode] for mode in settings.security_modes], permission_ruleset=StationRuleset()
        )
        if settings.allow_unencrypted:
            plain: list[ua.UserTokenType] = []
            if settings.allow_anonymous_read:
                plain.append(ua.UserTokenType.Anonymous)
            if settings.allow_unencrypted_login:
                plain.append(ua.UserTokenType.UserName)
            server.plain_tokens = tuple(plain)

    async def _serve(self) -> None:
        assert self._wake is not None
        interval = self.settings.status_interval_s
        next_status = time.monotonic() + interval
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_status - time.monotonic()))
            self._wake.clear()
            if self._stopping:
                break
            await self._flush_results()
            if time.monotonic() >= next_status:
                await self._refresh_status()
                next_status = time.monotonic() + interval

    async def _shutdown(self, server: Server) -> None:
        """Stop asyncua's 1 Hz clock task first (it sleeps a full second before noticing), then the rest."""
        clock = server.iserver.time_task
        if clock is not None:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
            server.iserver.time_task = None
        await server.stop()
        log.info("OPC UA server stopped")

    async def _flush_results(self) -> None:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            self._wake_scheduled = False
        if not batch or self._nodes is None:
            return
        for part in batch:
            await self._nodes.emit_result_event(part)
        await self._nodes.show_result(batch[-1])

    async def _refresh_status(self) -> None:
        """Poll the runtime in a worker thread (status() may touch SQLite); a failure is logged once."""
        assert self._nodes is not None
        try:
            status = await asyncio.to_thread(self._status)
        except Exception as exc:  # the server keeps serving the last known values
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_status_error:
                log.warning("OPC UA status refresh failed: %s", message)
            self._last_status_error = message
            return
        self._last_status_error = None
        await self._nodes.show_status(status)

    # ---- the one writable node -----------------------------------------------------------------
    async def _write_threshold(self, item: ua.WriteValue, user: User) -> ua.StatusCode:
        """Operator only; the value is validated as `SetThreshold` and applied by the runtime's door."""
        role = station_role(user)
        if role != "operator":
            log.warning("OPC UA threshold write refused: %s (%s) may not write", user.name, role)
            return status(StatusCodes.BadUserAccessDenied)
        if item.IndexRange:
            return status(StatusCodes.BadWriteNotSupported)
        value = _scalar_double(item.Value)
        if value is None:
            return status(StatusCodes.BadTypeMismatch)
        try:
            command = SetThreshold(threshold=value, request_id=None)
        except ValidationError:
            log.warning("OPC UA threshold write by %s refused: %r is out of range", user.name, value)
            return status(StatusCodes.BadOutOfRange)
        try:
            result = await asyncio.to_thread(self._execute, command, f"opcua:{user.name}")
        except Exception:
            log.exception("OPC UA threshold write by %s failed in the runtime", user.name)
            return status(StatusCodes.BadInternalError)
        if not result.ok:
            log.warning("OPC UA threshold write by %s refused by the runtime: %s", user.name, result.message)
            return status(StatusCodes.BadRequestNotAllowed)
        applied = result.new_value if isinstance(result.new_value, int | float) else value
        assert self._nodes is not None
        await self._nodes.set(THRESHOLD, float(applied))
        return status(StatusCodes.Good)

    # ---- the recipe methods --------------------------------------------------------------------
    async def _select_recipe(self, request: ua.CallMethodRequest, user: User) -> ua.CallMethodResult:
        return await self._call_recipe_command(SelectRecipe, request, user)

    async def _prepare_recipe(self, request: ua.CallMethodRequest, user: User) -> ua.CallMethodResult:
        return await self._call_recipe_command(PrepareRecipe, request, user)

    async def _call_recipe_command(
        self, kind: type[SelectRecipe] | type[PrepareRecipe], request: ua.CallMethodRequest, user: User
    ) -> ua.CallMethodResult:
        """Operator only; `RecipeId` is validated as the command and the command applied by the runtime's
        door; the runtime's answer is the outputs (Ok, Message), see the module docstring."""
        method = kind.__name__
        role = station_role(user)
        if role != "operator":
            log.warning("OPC UA %s refused: %s (%s) may not call it", method, user.name, role)
            return call_result(StatusCodes.BadUserAccessDenied)
        arguments = request.InputArguments or []
        if len(arguments) != 1:
            too_many = len(arguments) > 1
            return call_result(
                StatusCodes.BadTooManyArguments if too_many else StatusCodes.BadArgumentsMissing
            )
        name = _scalar_string(arguments[0])
        if name is None:
            return call_result(StatusCodes.BadInvalidArgument, [status(StatusCodes.BadTypeMismatch)])
        try:
            command = kind(name=name, request_id=None)
        except ValidationError:
            log.warning("OPC UA %s by %s refused: %r is not a recipe name", method, user.name, name[:80])
            return call_result(StatusCodes.BadInvalidArgument, [status(StatusCodes.BadInvalidArgument)])
        try:
            result = await asyncio.to_thread(self._execute, command, f"opcua:{user.name}")
        except Exception:
            log.exception("OPC UA %s by %s failed in the runtime", method, user.name)
            return call_result(StatusCodes.BadInternalError)
        if not result.ok:
            log.warning("OPC UA %s by %s refused by the runtime: %s", method, user.name, result.message)
        elif isinstance(command, SelectRecipe):  # shown now, not at the next status refresh
            assert self._nodes is not None
            await self._nodes.set(ACTIVE_RECIPE, command.name)
        outputs = [
            ua.Variant(result.ok, ua.VariantType.Boolean),
            ua.Variant(result.message, ua.VariantType.String),
        ]
        return call_result(StatusCodes.Good, [status(StatusCodes.Good)], outputs)


def _scalar_string(variant: ua.Variant) -> str | None:
    """A call's argument if it is a scalar String (a null String counts as ""); None otherwise."""
    if variant.is_array or variant.VariantType != ua.VariantType.String:
        return None
    return variant.Value if isinstance(variant.Value, str) else ""


def _scalar_double(data: ua.DataValue) -> float | None:
    """The written number if it is a scalar Double or Float with a good status; None otherwise."""
    variant = data.Value
    if data.StatusCode is not None and not data.StatusCode.is_good():
        return None
    if (
        variant is None
        or variant.is_array
        or variant.VariantType not in (ua.VariantType.Double, ua.VariantType.Float)
    ):
        return None
    return float(variant.Value)


def _is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
