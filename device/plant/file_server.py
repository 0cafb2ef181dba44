"""A small static file server for release files (`edgeinspect release serve`, `publish --serve`).

Plain `http.server` in a thread: release files are public (the signed manifest is what stations trust),
but HTTPS is offered with a certificate and key so the plant's network policy can require it.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.info("release server: %s - %s", self.address_string(), format % args)


class FileServer:
    """Serves `directory` on `host:port` (port 0: a free one) until `close()`."""

    def __init__(
        self,
        directory: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"release directory not found: {root}")
        handler = functools.partial(_QuietHandler, directory=str(root))
        self._server = ThreadingHTTPServer((host, port), handler)
        self.scheme = "http"
        if tls_cert_file or tls_key_file:
            if not (tls_cert_file and tls_key_file):
                raise ValueError("HTTPS needs both a certificate file and a key file")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert_file, tls_key_file)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, name="release-server", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"{self.scheme}://{shown}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
