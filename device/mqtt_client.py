"""How every MQTT connection of the product is made, on the station and on the plant server alike.

The broker URL (`mqtt://` or `mqtts://`), and one paho client factory (`create_client`: protocol, auth,
TLS, reconnect back-off, paho's log on ours), so the station's alert link, Sparkplug node, escalation and
fleet rollout and the plant's verifier and release publisher all obey the same `mqtt` settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.config import MqttSettings

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """Mosquitto is missing, would not start, or the broker URL is malformed."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://host[:1883]` or `mqtts://host[:8883]`."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BrokerError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerError(f"broker URL {url!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise BrokerError(f"broker URL {url!r} has a bad port: {exc}") from exc
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


class _OwnDisconnectIsNotAnError(logging.Filter):
    """paho's network thread logs "Client is not connected" at ERROR once more after every disconnect we
    asked for (state DISCONNECTING/DISCONNECTED). On a clean stop that alarms whoever reads the log, so
    it is logged at DEBUG; a lost connection (state CONNECTION_LOST) keeps its level."""

    OWN_STATES = ("MQTT_CS_DISCONNECTING", "MQTT_CS_DISCONNECTED")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Client is not connected") and message.endswith(self.OWN_STATES):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


PAHO_LOG = logging.getLogger(__name__ + ".paho")
PAHO_LOG.addFilter(_OwnDisconnectIsNotAnError())


def create_client(
    settings: MqttSettings,
    client_id: str,
    persistent: bool,
    session_expiry_s: int = 3600,
    reconnect_initial_s: float = 1.0,
) -> tuple[mqtt.Client, dict[str, Any]]:
    """A configured paho 2.x client (protocol, auth, TLS, reconnect back-off from `reconnect_initial_s`
    doubling up to `settings.reconnect_max_s`, paho's log on ours) and the keyword arguments for
    `connect_async`.

    Every MQTT connection of the product (alert link, Sparkplug node, escalation, verifier, fleet
    rollout) is made here, so all obey the same settings.
    """
    address = parse_broker_url(settings.url)
    v5 = settings.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
    )
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    tls_files = {
        "mqtt.tls_ca_file": settings.tls_ca_file,
        "mqtt.tls_cert_file": settings.tls_cert_file,
        "mqtt.tls_key_file": settings.tls_key_file,
    }
    if address.tls:
        for field, value in tls_files.items():
            if value and not Path(value).is_file():
                raise ValueError(f"{field}: file not found: {value}")
        client.tls_set(
            ca_certs=settings.tls_ca_file, certfile=settings.tls_cert_file, keyfile=settings.tls_key_file
        )
        client.tls_insecure_set(settings.tls_insecure)
    elif any(tls_files.values()):
        log.warning("TLS files are configured but %s is plain mqtt://; they are ignored", settings.url)
    # paho annotates the delays as int but waits `now + delay` seconds, so fractions work.
    client.reconnect_delay_set(
        min(reconnect_initial_s, settings.reconnect_max_s),  # type: ignore[arg-type]
        settings.reconnect_max_s,  # type: ignore[arg-type]
    )
    client.enable_logger(PAHO_LOG)
    kwargs: dict[str, Any] = {"host": address.host, "port": address.port, "keepalive": settings.keepalive_s}
    if v5:
        properties = Properties(PacketTypes.CONNECT)
        if persistent:
            properties.SessionExpiryInterval = session_expiry_s
        kwargs.update(clean_start=not persistent, properties=properties)
    return client, kwargs
