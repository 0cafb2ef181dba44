"""docker/mosquitto.plant.conf, run by a real Mosquitto: verifiers sharing `$share/<group>/<prefix>/verify/
request` get each request once between them, and a retained release manifest survives a broker restart.
(The compose file mounts this very file; only the port and the data folder are changed for the test.)"""

from __future__ import annotations

import getpass
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_mqtt import MessageCollector, wait_until

from device.station.broker import find_mosquitto, free_port, is_listening

pytestmark = pytest.mark.integration
CONF = Path(__file__).resolve().parents[2] / "docker" / "mosquitto.plant.conf"
REQUESTS = "edgeinspect/verify/request"


class PlantBroker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        text = CONF.read_text()
        assert re.search(r"^listener 1883$", text, re.MULTILINE)
        assert "persistence_location /mosquitto/data/" in text
        text = re.sub(r"^listener 1883$", f"listener {self.port} 127.0.0.1", text, flags=re.MULTILINE)
        text = text.replace("/mosquitto/data/", f"{workdir}/")
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(f"user {getpass.getuser()}\n{text}")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.config.parent / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config)], stderr=log, stdout=log
            )
        wait_until(lambda: is_listening("127.0.0.1", self.port), what="plant broker listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # a clean stop saves the database
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def plant_broker(tmp_path: Path) -> Iterator[PlantBroker]:
    broker = PlantBroker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_shared_subscription_hands_each_request_to_one_verifier(plant_broker: PlantBroker) -> None:
    shared = f"$share/verifiers/{REQUESTS}"
    with (
        MessageCollector(plant_broker.url, [shared]) as first,
        MessageCollector(plant_broker.url, [shared]) as second,
        MessageCollector(plant_broker.url, [f"$share/audit/{REQUESTS}"]) as other_group,
        MessageCollector(plant_broker.url, []) as station,
    ):
        for n in range(20):
            station.publish(REQUESTS, f"request-{n}".encode())
        other_group.wait_for(lambda got: len(got) == 20)
        wait_until(lambda: len(first.snapshot()) + len(second.snapshot()) >= 20, what="20 requests answered")
        taken = [m.payload for m in first.snapshot() + second.snapshot()]
    assert sorted(taken) == sorted(f"request-{n}".encode() for n in range(20))  # each once, none lost
    assert first.snapshot() and second.snapshot()  # and both verifiers got work
    # A second group is not a second pool of the same work: it gets its own copy of every request.
    assert len(other_group.snapshot()) == 20


def test_retained_release_manifest_survives_a_broker_restart(plant_broker: PlantBroker) -> None:
    with MessageCollector(plant_broker.url, []) as plant:
        plant.publish("edgeinspect/fleet/release", b'{"release_id": "r1"}', retain=True)
    plant_broker.stop()
    plant_broker.start()
    with MessageCollector(plant_broker.url, ["edgeinspect/fleet/release"]) as station:
        got = station.wait_for(lambda got: len(got) == 1)
    assert got[0].retain and got[0].payload == b'{"release_id": "r1"}'
