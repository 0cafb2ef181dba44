"""A loopback TCP proxy that can slow or stall traffic, to put a network between a client and a broker.

Why: a broker that is merely *slow* is the nasty case for at-least-once delivery. The broker may already
hold a message whose PUBACK is still on the wire when the box dies; the box must send it again after a
restart. A real broker behind this proxy shows that without mocking either side.

Each direction of each connection has a reader thread (socket -> queue) and a writer thread (queue ->
socket), so a stalled direction keeps reading and never blocks the other one. Bytes still held when a
connection closes are dropped, as a dying network would drop them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque

_CHUNK = 65_536
_POLL_S = 0.02


class _Direction:
    """One way of one connection: forward chunks `delay_s` after they arrived, unless stalled."""

    def __init__(self, proxy: StallingProxy, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        self._proxy = proxy
        self._src = src
        self._dst = dst
        self.upstream = upstream
        self._held: deque[tuple[float, bytes]] = deque()
        self._cond = threading.Condition()
        self.closed = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._read, name="proxy-read", daemon=True).start()
        threading.Thread(target=self._write, name="proxy-write", daemon=True).start()

    def held_bytes(self) -> int:
        with self._cond:
            return sum(len(chunk) for _, chunk in self._held)

    def _read(self) -> None:
        try:
            while not self.closed.is_set():
                chunk = self._src.recv(_CHUNK)
                if not chunk:
                    break
                with self._cond:
                    self._held.append((time.monotonic(), chunk))
                    self._cond.notify()
        except OSError:
            pass
        self.close()

    def _write(self) -> None:
        try:
            while not self.closed.is_set():
                chunk = self._next_due()
                if chunk is not None:
                    self._dst.sendall(chunk)
        except OSError:
            pass
        self.close()

    def _next_due(self) -> bytes | None:
        """The oldest held chunk once it is due and this direction flows; None after a short wait."""
        with self._cond:
            if not self._held or self._proxy.stalled(self.upstream):
                self._cond.wait(_POLL_S)
                return None
            arrived, chunk = self._held[0]
            wait_s = arrived + self._proxy.delay_s - time.monotonic()
            if wait_s > 0:
                self._cond.wait(min(wait_s, _POLL_S))
                return None
            self._held.popleft()
            return chunk

    def close(self) -> None:
        """Either side hung up: close both sockets, so the peer sees the connection drop too."""
        self.closed.set()
        for sock in (self._src, self._dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class StallingProxy:
    """Listens on a free loopback port and forwards every connection to `upstream_host:upstream_port`.

    `delay_s` delays every chunk in both directions; `stall_upstream` / `stall_downstream` hold
    client->broker or broker->client bytes (held, not dropped) until they are cleared.
    """

    def __init__(self, upstream_host: str, upstream_port: int, delay_s: float = 0.0) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.upstream_address = (upstream_host, upstream_port)
        self.delay_s = delay_s
        self.stall_upstream = threading.Event()
        self.stall_downstream = threading.Event()
        self.connections = 0
        self._directions: list[_Direction] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stalled(self, upstream: bool) -> bool:
        return (self.stall_upstream if upstream else self.stall_downstream).is_set()

    def held_bytes(self, upstream: bool) -> int:
        """Bytes received but not yet forwarded in that direction, over the open connections."""
        with self._lock:
            live = [d for d in self._directions if not d.closed.is_set()]
        return sum(d.held_bytes() for d in live if d.upstream == upstream)

    def start(self) -> StallingProxy:
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream_address, timeout=5.0)
            except OSError:
                client.close()  # broker down: the client sees a refused-like drop and retries
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = _Direction(self, client, server, upstream=True)
            down = _Direction(self, server, client, upstream=False)
            with self._lock:
                self.connections += 1
                self._directions += [up, down]
            up.start()
            down.start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._acceptor.join(2.0)
        with self._lock:
            directions = list(self._directions)
        for direction in directions:
            direction.close()

    def __enter__(self) -> StallingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
