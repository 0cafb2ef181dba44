"""A Sparkplug B edge node for the station, so SCADA hosts (Ignition, ...) discover it without custom topics.

Edge node = line id, device = station id. Its own MQTT connection (clean session, as the spec asks) whose
last will is the NDEATH for the current bdSeq; births on every connect, DDATA with the metrics that
changed, DDEATH then NDEATH on a clean stop. Sequence numbers run 0..255 and wrap; NBIRTH resets to 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.config import LineSettings, MqttSettings
from device.mqtt_client import create_client
from device.station.sparkplug.codec import (
    DataType,
    SparkplugTopic,
    check_id,
    decode_payload,
    encode_payload,
    infer_datatype,
)

log = logging.getLogger(__name__)

REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"  # Int64, as in the spec's examples and Eclipse Tahu

# Declared types for the metrics the runtime reports; anything else is typed from its first value.
DEVICE_METRIC_TYPES: dict[str, DataType] = {
    "frames": DataType.UInt64,
    "defects": DataType.UInt64,
    "fps": DataType.Double,
    "threshold": DataType.Double,
    "last_score": DataType.Double,
    "broker_connected": DataType.Boolean,
    "camera_connected": DataType.Boolean,
    "spool_depth": DataType.UInt64,
    "state": DataType.String,
}
_NUMERIC = {
    DataType.Int8,
    DataType.Int16,
    DataType.Int32,
    DataType.Int64,
    DataType.UInt8,
    DataType.UInt16,
    DataType.UInt32,
    DataType.UInt64,
    DataType.Float,
    DataType.Double,
}

Metrics = dict[str, tuple[DataType, Any]]


class SparkplugNode:
    """`metrics_provider()` returns `{name: value}`; it is called outside this node's lock."""

    def __init__(
        self,
        settings: MqttSettings,
        line: LineSettings,
        metrics_provider: Callable[[], Mapping[str, Any]],
        *,
        period_s: float | None = None,
        reconnect_initial_s: float = 0.5,
    ) -> None:
        self.group_id = check_id("group id", settings.sparkplug_group_id)
        self.edge_node_id = check_id("edge node id", line.line_id)
        self.device_id = check_id("device id", line.station_id)
        self._metrics_provider = metrics_provider
        self._period_s = period_s
        self._lock = threading.RLock()
        self._bd_seq = -1  # incremented before every CONNECT, so the first connection uses 0
        self._seq = 0
        self._born = False
        self._connected = False
        self._types: dict[str, DataType] = {}
        self._last: dict[str, Any] = {}
        self._stopping = threading.Event()
        self._started = False
        self.last_error: str | None = None
        self._client, self._connect_kwargs = create_client(
            settings, f"{settings.client_id}-spb", persistent=False, reconnect_initial_s=reconnect_initial_s
        )
        self._client.on_pre_connect = self._handle_pre_connect
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._ticker = threading.Thread(target=self._tick, name="sparkplug-ddata", daemon=True)

    # ---- topics --------------------------------------------------------------------------------
    def topic(self, message_type: str) -> str:
        device = self.device_id if message_type[0] == "D" else None
        return str(SparkplugTopic(self.group_id, message_type, self.edge_node_id, device))

    @property
    def bd_seq(self) -> int:
        return max(self._bd_seq, 0)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def born(self) -> bool:
        return self._born

    # ---- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            raise RuntimeError("SparkplugNode.start() called twice")
        self._started = True
        self._client.connect_async(**self._connect_kwargs)
        self._client.loop_start()
        if self._period_s:
            self._ticker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """DDEATH then NDEATH (the will does not fire on a clean disconnect), then disconnect."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        if self._ticker.is_alive():
            self._ticker.join(timeout_s)
        ndeath = None
        with self._lock:
            if self._born and self._connected:
                self._client.publish(self.topic("DDEATH"), encode_payload({}, seq=self._next_seq()), qos=0)
                ndeath = self._client.publish(self.topic("NDEATH"), self._ndeath_payload(), qos=1)
            self._born = False
        if ndeath is not None:
            try:
                ndeath.wait_for_publish(timeout=min(timeout_s, 2.0))
            except (RuntimeError, ValueError) as exc:
                log.warning("Sparkplug NDEATH not confirmed before disconnect: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False

    # ---- data ----------------------------------------------------------------------------------
    def publish_data(self, force: bool = False) -> bool:
        """DDATA with the metrics that changed since the last birth/data (all of them with `force`)."""
        if not self._born:
            return False
        metrics = self._collect()
        with self._lock:
            if not self._born:
                return False
            if set(metrics) != set(self._types):
                self._publish_dbirth(metrics)  # the metric set changed: hosts need a new birth
                return True
            changed = {k: v for k, v in metrics.items() if force or self._last.get(k) != v[1]}
            if not changed:
                return False
            self._client.publish(self.topic("DDATA"), encode_payload(changed, seq=self._next_seq()), qos=0)
            self._last.update({k: v[1] for k, v in changed.items()})
            return True

    def _collect(self) -> Metrics:
        try:
            values = dict(self._metrics_provider())
        except Exception as exc:
            log.exception("Sparkplug metrics provider failed")
            self.last_error = f"metrics provider: {type(exc).__name__}: {exc}"
            values = {name: None for name in self._types}
        typed: Metrics = {}
        for name, value in values.items():
            datatype = self._types.get(name) or DEVICE_METRIC_TYPES.get(name)
            if datatype is None:
                datatype = infer_datatype(value) if value is not None else DataType.String
            if datatype in _NUMERIC and (isinstance(value, bool) or not isinstance(value, (int, float))):
                value = None
            elif datatype == DataType.Boolean and value is not None:
                value = bool(value)
            elif datatype == DataType.String and value is not None:
                value = str(value)
            typed[name] = (datatype, value)
        return typed

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _ndeath_payload(self) -> bytes:
        return encode_payload({BDSEQ_METRIC: (DataType.Int64, self.bd_seq)}, seq=None)

    def _publish_births(self) -> None:
        metrics = self._collect()
        with self._lock:
            self._seq = 0
            node_metrics: Metrics = {
                BDSEQ_METRIC: (DataType.Int64, self.bd_seq),
                REBIRTH_METRIC: (DataType.Boolean, False),
            }
            self._client.publish(
                self.topic("NBIRTH"), encode_payload(node_metrics, seq=self._next_seq()), qos=0
            )
            self._publish_dbirth(metrics)
            self._born = True

    def _publish_dbirth(self, metrics: Metrics) -> None:
        self._types = {name: datatype for name, (datatype, _) in metrics.items()}
        self._last = {name: value for name, (_, value) in metrics.items()}
        self._client.publish(self.topic("DBIRTH"), encode_payload(metrics, seq=self._next_seq()), qos=0)

    def _tick(self) -> None:
        assert self._period_s is not None
        while not self._stopping.wait(self._period_s):
            try:
                self.publish_data()
            except Exception:
                log.exception("Sparkplug DDATA failed")

    # ---- paho callbacks ------------------------------------------------------------------------
    def _handle_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # Every CONNECT carries the next bdSeq, in its NDEATH will and (after CONNACK) in the NBIRTH.
        with self._lock:
            self._bd_seq = (self._bd_seq + 1) % 256
            client.will_set(self.topic("NDEATH"), self._ndeath_payload(), qos=1, retain=False)

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the Sparkplug connection: {reason_code}"
            log.warning(self.last_error)
            return
        self._connected = True
        client.subscribe(self.topic("NCMD"), qos=1)
        self._publish_births()
        log.info("Sparkplug node %s/%s born (bdSeq %d)", self.group_id, self.edge_node_id, self.bd_seq)

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected = False
        with self._lock:
            self._born = False
        if not self._stopping.is_set():
            self.last_error = f"Sparkplug connection lost: {reason_code}"
            log.warning(self.last_error)

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.topic("NCMD"):
            return
        try:
            command = decode_payload(message.payload)
        except ValueError as exc:
            log.warning("ignoring malformed Sparkplug NCMD: %s", exc)
            return
        rebirth = command.metrics.get(REBIRTH_METRIC)
        if rebirth is not None and rebirth.value is True:
            log.info("Sparkplug rebirth requested")
            self._publish_births()
