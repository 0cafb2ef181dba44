"""The local broker helper: find Mosquitto, start it where the settings point, restart on the same port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fixtures_mqtt import MessageCollector

import device.station.broker as broker_module
from device.mqtt_client import BrokerAddress, BrokerError, parse_broker_url
from device.station.broker import (
    MosquittoBroker,
    ensure_local_broker,
    find_mosquitto,
    free_port,
    is_listening,
)

pytestmark = pytest.mark.integration


def test_missing_mosquitto_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_module, "_SEARCH_PATHS", (str(tmp_path / "nope"),))
    with pytest.raises(BrokerError, match="install Debian's mosquitto"):
        find_mosquitto()


def test_broker_urls_parse_with_default_ports() -> None:
    assert parse_broker_url("mqtt://10.0.0.5") == BrokerAddress("10.0.0.5", 1883, False)
    assert parse_broker_url("mqtts://broker.plant:8884").port == 8884
    assert parse_broker_url("mqtts://broker.plant").port == 8883
    with pytest.raises(BrokerError, match="must start with mqtt://"):
        parse_broker_url("http://x")
    with pytest.raises(BrokerError, match="bad port"):
        parse_broker_url("mqtt://x:99999")


def test_restart_keeps_the_port_and_persistent_sessions(tmp_path: Path) -> None:
    with MosquittoBroker(persistence_dir=tmp_path / "db") as broker:
        port = broker.port
        assert find_mosquitto().endswith("mosquitto")
        assert broker.url == f"mqtt://127.0.0.1:{port}" and is_listening("127.0.0.1", port)
        MessageCollector(broker.url, ["t/#"], persistent=True, client_id="keeper").start().stop()
        with MessageCollector(broker.url, []) as publisher:
            publisher.publish("t/1", b"while the keeper is away")
        broker.restart()
        assert broker.port == port and broker.running
        with MessageCollector(broker.url, ["t/#"], persistent=True, client_id="keeper") as keeper:
            got = keeper.wait_for(lambda m: len(m) == 1)
        assert got[0].payload == b"while the keeper is away"
    assert not is_listening("127.0.0.1", port)


def test_ensure_local_broker_starts_one_only_when_nothing_listens() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    started = ensure_local_broker(url)
    try:
        assert started is not None and started.running
        assert is_listening("127.0.0.1", started.port)
        assert ensure_local_broker(url) is None  # already served
    finally:
        if started is not None:
            started.close()
    assert ensure_local_broker("mqtt://192.0.2.1:1883") is None  # not ours to start


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match="already listens"):
            MosquittoBroker(port=port).start()
