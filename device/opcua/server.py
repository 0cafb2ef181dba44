"""`OpcUaServer`: asyncua's server on its own thread and event loop, behind synchronous start()/stop().

The runtime is threaded, so this class is the bridge: `publish_result` may be called from the inspection
thread at line rate (it only queues and wakes the loop), state and counters are polled from the status
provider every `status_interval_s`, and an operator's threshold write is turned into
`SetThreshold` through the runtime's `execute` (run in a worker thread, never on the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections import deque
from urllib.parse import urlsplit

from asyncua import ua
from asyncua.crypto.permission_rules import User
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from pydantic import ValidationError

from device.commands import SetThreshold
from device.config import LineSettings, OpcUaSettings
from device.opcua.access import (
    GuardedAttributeService,
    StationRuleset,
    StationUserManager,
    station_role,
    status,
)
from device.opcua.contract import CommandExecutor, PartResult, StatusProvider
from device.opcua.nodes import THRESHOLD, StationNodes, build_address_space, node_id

log = logging.getLogger(__name__)

PENDING_RESULTS_MAX = 1000  # results waiting for the loop; beyond this the oldest are dropped


class OpcUaError(RuntimeError):
    """The OPC UA server could not start (port taken, bad certificate, ...)."""


class OpcUaServer:
    def __init__(
        self,
        settings: OpcUaSettings,
        line: LineSettings,
        status: StatusProvider,
        execute: CommandExecutor,
        *,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self._line = line
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
        return "Basic256Sha256 SignAndEncrypt" if self.settings.certificate else "None (plain text)"

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
        server = Server(user_manager=StationUserManager(settings))
        attributes = GuardedAttributeService(server.iserver.aspace)
        server.iserver.attribute_service = attributes
        await server.init()
        line, station = self._line.line_id, self._line.station_id
        server.set_endpoint(settings.endpoint)
        server.set_server_name(f"EdgeInspect {line}/{station}")
        server.product_uri = "urn:edgeinspect"
        await server.set_application_uri(f"urn:edgeinspect:{line}:{station}")
        await self._configure_security(server)
        ns = await server.register_namespace(settings.namespace_uri)
        self.namespace_index = ns
        self._nodes = await build_address_space(server, ns, f"EdgeInspect {line}/{station}", line, station)
        attributes.add_guard(node_id(ns, THRESHOLD), self._write_threshold)
        await self._refresh_status()
        return server

    async def _configure_security(self, server: Server) -> None:
        settings = self.settings
        tokens: list[type] = [ua.UserNameIdentityToken]
        if settings.allow_anonymous_read:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if settings.certificate is not None:
            await server.load_certificate(settings.certificate.certificate_file)
            await server.load_private_key(settings.certificate.private_key_file)
            policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        else:
            policies = [ua.SecurityPolicyType.NoSecurity]
            if not _is_loopback(settings.endpoint):
                log.warning(
                    "OPC UA endpoint %s is not loopback and has no certificate: logins travel in plain text",
                    settings.endpoint,
                )
        server.set_security_policy(policies, permission_ruleset=StationRuleset())

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
