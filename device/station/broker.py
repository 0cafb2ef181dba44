"""Where the broker is, and a local Mosquitto for `edgeinspect run` and the tests.

A station with no site broker yet still works: `ensure_local_broker` starts Debian's Mosquitto on the
loopback port the settings name, so alerts flow (and spool) the same way they will in production.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from device.mqtt_client import BrokerError, parse_broker_url

log = logging.getLogger(__name__)

_SEARCH_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_READY_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0


def find_mosquitto() -> str:
    """The mosquitto executable; it usually lives in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _SEARCH_PATHS:
        if Path(candidate).is_file():
            return candidate
    raise BrokerError(
        "mosquitto not found on PATH or in /usr/sbin: install Debian's mosquitto "
        "(sudo apt-get install mosquitto) or point mqtt.url at a running broker"
    )


def is_listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MosquittoBroker:
    """A Mosquitto child process on one port; `restart()` keeps the port so clients can reconnect.

    With `persistence_dir`, sessions and queued QoS 1 messages survive `stop()`/`restart()` (Mosquitto
    saves its database on a clean shutdown), which is what a persistent subscriber relies on.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        persistence_dir: str | Path | None = None,
        max_queued_messages: int = 100_000,
        tls_files: tuple[str | Path, str | Path, str | Path] | None = None,
    ) -> None:
        """`tls_files` = (CA, server certificate, server key) makes it an mqtts:// listener."""
        self.host = host
        self.tls_files = tls_files
        self._requested_port = port
        self._port = port
        self.persistence_dir = Path(persistence_dir) if persistence_dir is not None else None
        self.max_queued_messages = max_queued_messages
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "mqtts" if self.tls_files else "mqtt"
        return f"{scheme}://{host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._workdir / "mosquitto.log" if self._workdir else None

    def _write_config(self) -> Path:
        assert self._workdir is not None
        lines = [
            # As root, Mosquitto drops to user `mosquitto`, which cannot write our private temp dir.
            f"user {getpass.getuser()}",
            f"listener {self._port} {self.host}",
            "allow_anonymous true",
            f"max_queued_messages {self.max_queued_messages}",
            "set_tcp_nodelay true",
            f"log_dest file {self._workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.tls_files:
            cafile, certfile, keyfile = self.tls_files
            lines += [f"cafile {cafile}", f"certfile {certfile}", f"keyfile {keyfile}"]
        if self.persistence_dir is not None:
            self.persistence_dir.mkdir(parents=True, exist_ok=True)
            lines += [
                "persistence true",
                f"persistence_location {self.persistence_dir}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        config = self._workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> MosquittoBroker:
        if self.running:
            return self
        executable = find_mosquitto()
        if self._port == 0:
            self._port = free_port(self.host)
        elif is_listening(self.host, self._port, timeout_s=0.2):
            raise BrokerError(f"cannot start mosquitto on {self.url}: something already listens there")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="edgeinspect-mosquitto-"))
        config = self._write_config()
        output = (self._workdir / "stdout.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [executable, "-c", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            output.close()
        _RUNNING.add(self)
        self._wait_ready()
        log.info("mosquitto listening on %s (pid %d)", self.url, self._process.pid)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                detail = self._log_tail()
                self._process = None
                raise BrokerError(f"mosquitto exited at start on {self.url}: {detail}")
            if is_listening(self.host, self._port, timeout_s=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"mosquitto did not accept connections on {self.url} within {_READY_TIMEOUT_S:.0f} s"
        )

    def _log_tail(self) -> str:
        texts = []
        for name in ("stdout.log", "mosquitto.log"):
            path = self._workdir / name if self._workdir else None
            if path and path.is_file():
                texts.append(path.read_text(errors="replace").strip())
        tail = "\n".join(t for t in texts if t).splitlines()[-5:]
        return " | ".join(tail) or "no output"

    def stop(self) -> None:
        """Clean shutdown (SIGTERM): Mosquitto saves its persistence database."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """Crash the broker (SIGKILL): nothing saved since the last autosave, clients see a dead socket."""
        self._terminate(signal.SIGKILL)

    def _terminate(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)

    def restart(self) -> MosquittoBroker:
        """Stop and start again on the same port."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the config/log directory."""
        self.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_RUNNING: set[MosquittoBroker] = set()


@atexit.register
def _stop_children() -> None:
    """A broker this process started must not outlive it, nor litter /tmp with its config."""
    for broker in list(_RUNNING):
        with contextlib.suppress(Exception):
            broker.close()


def ensure_local_broker(url: str, persistence_dir: str | Path | None = None) -> MosquittoBroker | None:
    """Start Mosquitto on the URL's port when the URL is loopback and nothing listens there yet.

    Returns the started broker (the caller stops it) or None when a broker already answers, the URL is
    remote, or it asks for TLS (a local plain-text broker cannot stand in for a TLS one).
    """
    address = parse_broker_url(url)
    if address.host not in _LOOPBACK_HOSTS:
        return None
    host = "127.0.0.1" if address.host == "localhost" else address.host
    if is_listening(host, address.port):
        return None
    if address.tls:
        log.warning("nothing listens on %s and a local broker cannot provide TLS; not starting one", url)
        return None
    return MosquittoBroker(port=address.port, host=host, persistence_dir=persistence_dir).start()
