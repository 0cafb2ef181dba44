"""paho's "Client is not connected" after a disconnect we asked for is not an error on a clean stop; after
a lost connection it still is."""

from __future__ import annotations

import logging

import pytest

from device.mqtt_client import PAHO_LOG


def _paho_says(state: str) -> str:
    # paho.mqtt.client.Client._loop, word for word
    return f"Client is not connected. Socket: None). Last known Connection State: {state}"


@pytest.mark.parametrize("state", ["MQTT_CS_DISCONNECTED", "MQTT_CS_DISCONNECTING"])
def test_our_own_disconnect_is_logged_at_debug(caplog: pytest.LogCaptureFixture, state: str) -> None:
    with caplog.at_level(logging.INFO, logger=PAHO_LOG.name):
        PAHO_LOG.error(_paho_says(state))
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    with caplog.at_level(logging.DEBUG, logger=PAHO_LOG.name):
        PAHO_LOG.error(_paho_says(state))
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


def test_a_lost_connection_stays_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=PAHO_LOG.name):
        PAHO_LOG.error(_paho_says("MQTT_CS_CONNECTION_LOST"))
        PAHO_LOG.error("failed to receive on socket: [Errno 104] Connection reset by peer")
    assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR"]
