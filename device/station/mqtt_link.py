"""The station's MQTT connection: alerts out of the spool, status out, commands in.

Delivery contract: a message leaves the outbox only when the broker acknowledged it (paho's on_publish for
that message id, i.e. PUBACK for QoS 1). Messages go out in outbox order through a small window of
in-flight publishes. After a lost connection the link starts again from the head of the outbox, so the
broker may see a message twice but never sees a later one first (first arrivals stay in order).

Threads: paho's network thread only records events (PUBACKs, disconnects, commands); the publisher thread
owns the window and the outbox writes; a command thread runs `on_command`, so a slow command (a model
swap) never stalls keep-alives or PUBACKs.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeGuard

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from device.config import MqttSettings
from device.mqtt_client import create_client
from device.station.commands import Command, CommandResult, command_adapter
from device.station.outbox import Outbox, OutboxError
from device.station.topics import Topics

log = logging.getLogger(__name__)

_DISCONNECTED = object()
_ERROR_DETAIL_CHARS = 300


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CommandRejected(ValueError):
    """A command message that cannot be executed; carries what the response needs to name it."""

    def __init__(self, message: str, command: str = "unknown", request_id: str | None = None) -> None:
        super().__init__(message)
        self.command = command
        self.request_id = request_id

    def result(self) -> CommandResult:
        return CommandResult(ok=False, command=self.command, request_id=self.request_id, message=str(self))


def _describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        field = ".".join(str(p) for p in item["loc"])
        parts.append(f"{field}: {item['msg']}" if field else item["msg"])
    return "; ".join(parts)[:_ERROR_DETAIL_CHARS]


def _is_echoable(value: object) -> TypeGuard[str]:
    """A string the response may echo: JSON's `\\ud800` escapes decode to lone surrogates, not UTF-8."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_command(payload: bytes, max_bytes: int = 65_536) -> Command:
    """Bytes from the command topic to a typed `Command`; raises `CommandRejected` naming the problem."""
    if len(payload) > max_bytes:
        raise CommandRejected(f"command is {len(payload)} bytes; the limit is {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandRejected(f"command is not UTF-8 text: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CommandRejected(f"command is not valid JSON: {exc}"[:_ERROR_DETAIL_CHARS]) from exc
    except RecursionError as exc:  # e.g. 60 KiB of `[`: refuse it, or the command thread would die
        raise CommandRejected("command is nested too deeply") from exc
    if not isinstance(data, dict):
        raise CommandRejected(f"command must be a JSON object, got {type(data).__name__}")
    name = data.get("command")
    command = name[:64] if _is_echoable(name) and name else "unknown"
    request_id = data.get("request_id")
    request_id = request_id if _is_echoable(request_id) and len(request_id) <= 128 else None
    try:
        return command_adapter.validate_python(data)
    except ValidationError as exc:
        raise CommandRejected(
            f"invalid command: {_describe_validation_error(exc)}", command, request_id
        ) from exc


class MqttLink:
    """One persistent MQTT session for the station (see the module docstring for the guarantees)."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        outbox: Outbox,
        on_command: Callable[[Command], CommandResult],
        status_payload: Callable[[], dict[str, Any]],
        *,
        max_inflight: int = 16,
        session_expiry_s: int = 3600,
        reconnect_initial_s: float = 0.5,
        command_max_bytes: int = 65_536,
        command_queue_size: int = 256,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self._on_command = on_command
        self._status_payload = status_payload
        self._max_inflight = max_inflight
        self._command_max_bytes = command_max_bytes
        self._v5 = settings.protocol == "5"
        self.last_error: str | None = None
        self.delivered = 0
        self.commands_handled = 0
        self.commands_rejected = 0
        self._counter_lock = threading.Lock()  # counters are bumped from the network and command threads
        self._status_lock = threading.Lock()  # no `online` may overtake the final `offline`
        self._connected = False
        self._started = False
        self._stopped = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._status_due = threading.Event()
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}  # paho message id -> outbox row id; publisher thread only
        self._commands: queue.Queue[tuple[bytes, bytes | None]] = queue.Queue(maxsize=command_queue_size)

        self._client, self._connect_kwargs = create_client(
            settings,
            settings.client_id,
            persistent=True,
            session_expiry_s=session_expiry_s,
            reconnect_initial_s=reconnect_initial_s,
        )
        will = self._status_document("offline", reason="connection lost")
        self._client.will_set(topics.status, json.dumps(will), qos=1, retain=True)
        # Our window bounds what is in flight; paho must never hold messages back or refuse them.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._handle_connect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_publish = self._handle_publish
        self._client.on_message = self._handle_message
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-publisher", daemon=True)
        self._commander = threading.Thread(target=self._command_loop, name="mqtt-commands", daemon=True)

    # ---- public --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect in the background; never blocks or raises for an unreachable broker."""
        if self._started:
            raise RuntimeError("MqttLink.start() called twice")
        self._started = True
        self._client.connect_async(**self._connect_kwargs)
        self._client.loop_start()
        self._publisher.start()
        self._commander.start()
        log.info("MQTT link connecting to %s as %s", self.settings.url, self.settings.client_id)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Retained `offline` status, clean disconnect (no last will); undelivered rows stay spooled."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._wake.set()
        self._publisher.join(timeout_s)
        self._commander.join(timeout_s)
        with self._status_lock:
            info = None
            if self._connected:
                document = self._status_document("offline", reason="stopped", ts=_now_iso())
                info = self._client.publish(self.topics.status, json.dumps(document), qos=1, retain=True)
        if info is not None:
            try:
                info.wait_for_publish(timeout=min(timeout_s, 2.0))
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not confirmed before disconnect: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False
        try:
            self._apply_events()  # PUBACKs that arrived while the offline status went out
        except OutboxError as exc:  # e.g. the outbox was closed first: those rows are simply sent again
            log.warning("could not record the last acknowledgements: %s", exc)
        log.info("MQTT link stopped; %d message(s) stay in the outbox", self.outbox.depth())

    def wake(self) -> None:
        """Something new is in the outbox: deliver it now instead of at the next poll."""
        self._wake.set()

    def publish_status(self) -> bool:
        """Publish the retained `online` status now; False while disconnected (sent on connect anyway)."""
        return self._publish_online()

    def publish_response(self, result: CommandResult, correlation_data: bytes | None = None) -> bool:
        """Answer on the response topic (MQTT 5: with the request's correlation data)."""
        properties = None
        if self._v5 and correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation_data
        info = self._client.publish(
            self.topics.command_response,
            # `details` only when a refusal has figures: the response other clients parse stays as it was
            result.model_dump_json(exclude={"details"} if result.details is None else None),
            qos=1,
            properties=properties,
        )
        return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)

    def publish_live(self, topic: str, payload: bytes) -> bool:
        """Publish now at QoS 1 without spooling (per-part results: the PLC sees a gap in frame ids when
        one is lost, and the next part matters more); False while disconnected."""
        if not self._connected:
            return False
        return self._client.publish(topic, payload, qos=1).rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def answer(self, payload: bytes) -> CommandResult:
        """Parse and execute one command message; every failure becomes an error result, not an exception."""
        try:
            command = parse_command(payload, self._command_max_bytes)
        except CommandRejected as exc:
            self._count("commands_rejected")
            return exc.result()
        try:
            result = self._on_command(command)
        except Exception as exc:
            log.exception("command %s failed", command.command)
            self._count("commands_rejected")
            detail = f"{type(exc).__name__}: {exc}"[:_ERROR_DETAIL_CHARS]
            return CommandResult(
                ok=False, command=command.command, request_id=command.request_id, message=f"failed: {detail}"
            )
        self._count("commands_handled")
        if result.request_id is None and command.request_id is not None:
            result = result.model_copy(update={"request_id": command.request_id})
        return result

    def _count(self, counter: str) -> None:
        with self._counter_lock:
            setattr(self, counter, getattr(self, counter) + 1)

    # ---- status --------------------------------------------------------------------------------
    def _status_document(self, state: str, **extra: Any) -> dict[str, Any]:
        return {
            "state": state,
            "client_id": self.settings.client_id,
            "line_id": self.topics.line_id,
            "station_id": self.topics.station_id,
            **extra,
        }

    def _publish_online(self) -> bool:
        if not self._connected or self._stopping.is_set():
            return False
        try:
            payload = dict(self._status_payload())
        except Exception as exc:
            log.exception("status_payload() failed")
            payload = {"status_error": f"{type(exc).__name__}: {exc}"[:_ERROR_DETAIL_CHARS]}
        if "state" in payload:  # the link owns `state` (online/offline); keep the runtime's under its name
            payload["runtime_state"] = payload.pop("state")
        payload.setdefault("ts", _now_iso())
        document = json.dumps({**payload, **self._status_document("online")}, default=str)
        with self._status_lock:
            if self._stopping.is_set():
                return False
            info = self._client.publish(self.topics.status, document, qos=1, retain=True)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    # ---- paho callbacks (network thread: record and wake, nothing slow) ------------------------
    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("MQTT %s", self.last_error)
            return
        self._connected = True
        if self._v5:  # retain-as-published: a retained command sent while subscribed keeps its flag: refused
            client.subscribe(self.topics.command, options=SubscribeOptions(qos=1, retainAsPublished=True))
        else:  # 3.1.1 clears the flag on live delivery: only a replay after (re)subscribing is refused
            client.subscribe(self.topics.command, qos=1)
        self._status_due.set()
        self._wake.set()
        log.info("MQTT connected to %s (session present: %s)", self.settings.url, flags.session_present)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.last_error = f"cannot connect to {self.settings.url}"
        log.debug("MQTT %s; retrying with backoff", self.last_error)

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected, self._connected = self._connected, False
        self._events.put(_DISCONNECTED)
        self._wake.set()
        if not self._stopping.is_set():
            self.last_error = f"disconnected from {self.settings.url}: {reason_code}"
            if was_connected:
                log.warning("MQTT %s; reconnecting with backoff", self.last_error)

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        self._events.put((mid, reason_code))
        self._wake.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.topics.command:
            return
        correlation = getattr(message.properties, "CorrelationData", None) if message.properties else None
        if message.retain:
            # A retained command would run again on every reconnect; refuse it loudly instead.
            self._count("commands_rejected")
            self.publish_response(
                CommandResult(ok=False, command="unknown", message="retained commands are ignored"),
                correlation,
            )
            return
        try:
            self._commands.put_nowait((bytes(message.payload), correlation))
        except queue.Full:
            self._count("commands_rejected")
            self.publish_response(
                CommandResult(ok=False, command="unknown", message="too many commands waiting; try again"),
                correlation,
            )

    # ---- workers -------------------------------------------------------------------------------
    def _command_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                payload, correlation = self._commands.get(timeout=0.5)
            except queue.Empty:
                continue
            self._respond(payload, correlation)

    def _respond(self, payload: bytes, correlation: bytes | None) -> None:
        """Answer one command; whatever goes wrong, the sender gets an answer and this thread lives on."""
        try:
            self.publish_response(self.answer(payload), correlation)
        except Exception as exc:
            log.exception("command message could not be answered")
            detail = f"{type(exc).__name__}: {exc}"[:_ERROR_DETAIL_CHARS]
            fallback = CommandResult(ok=False, command="unknown", message=f"internal error: {detail}")
            try:
                self.publish_response(fallback, correlation)
            except Exception:
                log.exception("could not publish the error response either")

    def _apply_events(self) -> tuple[bool, bool]:
        """Apply queued PUBACKs/disconnects to the window: (restart at the head?, did the broker refuse?)."""
        inflight = self._inflight
        acked: list[int] = []
        rewind = refused = False
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is _DISCONNECTED:
                inflight.clear()
                rewind = True
                continue
            mid, reason_code = event
            row_id = inflight.pop(mid, None)
            if row_id is None:
                continue
            if reason_code.is_failure:
                self.last_error = f"broker refused a message (outbox row {row_id}): {reason_code}"
                log.warning("MQTT %s; it stays spooled and is retried", self.last_error)
                rewind = refused = True
            else:
                acked.append(row_id)
        if acked:
            self.delivered += self.outbox.ack_many(acked)
        return rewind, refused

    def _publish_loop(self) -> None:
        last_sent = 0
        retry_at = 0.0
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                rewind, refused = self._apply_events()
                if rewind:
                    last_sent = 0
                if refused:  # not a reconnect: give the broker (or its operator) a moment
                    retry_at = time.monotonic() + 1.0
                if not self._connected or self._stopping.is_set():
                    continue
                if self._status_due.is_set():
                    self._status_due.clear()
                    self._publish_online()
                if time.monotonic() < retry_at:
                    continue
                last_sent = self._send_window(last_sent)
            except Exception as exc:
                self.last_error = f"publisher: {type(exc).__name__}: {exc}"
                log.exception("MQTT publisher error; retrying")
                self._stopping.wait(1.0)

    def _send_window(self, last_sent: int) -> int:
        inflight = self._inflight
        room = self._max_inflight - len(inflight)
        if room <= 0:
            return last_sent
        pending = set(inflight.values())
        batch = [m for m in self.outbox.peek(room + len(pending), after_id=last_sent) if m.id not in pending]
        sent: list[int] = []
        for message in batch[:room]:
            info = self._client.publish(message.topic, message.payload, qos=message.qos)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.last_error = f"publish failed: {mqtt.error_string(info.rc)}"
                break
            inflight[info.mid] = message.id
            last_sent = message.id
            sent.append(message.id)
        if sent:
            self.outbox.mark_attempt(sent)
        return last_sent
