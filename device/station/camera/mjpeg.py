"""HTTP(S) MJPEG cameras (multipart/x-mixed-replace), read with the standard library.

OpenCV's own HTTP reader hides whether a stream dropped or one frame was bad, and can block forever; this
reader has a socket timeout, tells a broken part (CorruptFrame, read on) from a lost stream (CameraError,
reconnect), and resynchronises on the next boundary after garbage.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import threading
from collections.abc import Callable
from email.message import Message
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

from device.station.camera.base import CameraError, CorruptFrame
from device.station.camera.decode import decode_image

MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_PART_BYTES = 32 * 1024 * 1024


def redact_url(url: str) -> str:
    """The URL without its password, for names, logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, parts.fragment))


class MultipartReader:
    """Splits a multipart/x-mixed-replace byte stream into parts.

    `read_chunk(n)` returns up to n bytes, b"" at end of stream, and may raise OSError (timeouts included).
    Servers differ: some repeat the dashes of the boundary parameter, some omit Content-Length or the CRLF
    before a boundary; all of these are accepted.
    """

    def __init__(
        self, read_chunk: Callable[[int], bytes], boundary: str, max_part_bytes: int = DEFAULT_MAX_PART_BYTES
    ) -> None:
        token = boundary.strip().strip('"').lstrip("-")
        if not token:
            raise ValueError("empty multipart boundary")
        self._token = token.encode("latin-1")
        self._read_chunk = read_chunk
        self._max_part = max_part_bytes
        self._buf = bytearray()
        self._seen_part = False
        self._resyncing = False  # after a part we could not delimit, its body is not reported again

    def _fill(self) -> None:
        try:
            chunk = self._read_chunk(64 * 1024)
        except (OSError, http.client.HTTPException) as exc:
            raise CameraError(f"stream read failed: {exc or type(exc).__name__}") from exc
        if not chunk:
            raise CameraError("stream closed by the server")
        self._buf += chunk

    def _find_delimiter(self, start: int = 0, anywhere: bool = False) -> tuple[int, int] | None:
        """(start, end) of the next boundary at or after `start`, if buffered. Normally it must begin a
        line; `anywhere` also accepts `--boundary` glued to the end of a body, as some cameras send it."""
        if anywhere:
            hit = self._buf.find(b"--" + self._token, start)
            if hit < 0:
                return None
            end = hit + 2 + len(self._token)
            while hit > 0 and self._buf[hit - 1] == ord("-"):  # `----b` when the parameter was `--b`
                hit -= 1
            return hit, end
        pos = start
        while True:
            hit = self._buf.find(self._token, pos)
            if hit < 0:
                return None
            line_start = self._buf.rfind(b"\n", 0, hit) + 1
            prefix = bytes(self._buf[line_start:hit])
            if prefix and prefix.strip(b"-") == b"":
                return line_start, hit + len(self._token)
            pos = hit + 1

    def _read_line(self) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line.rstrip(b"\r\n")
            if len(self._buf) > MAX_HEADER_BYTES:
                raise CameraError("multipart header line too long: lost sync with the stream")
            self._fill()

    def _skip_to_delimiter(self) -> int:
        """Drop bytes up to and including the next boundary; garbage after the first part is CorruptFrame."""
        stray = 0
        while True:
            found = self._find_delimiter()
            if found is not None:
                line_start, token_end = found
                stray += len(bytes(self._buf[:line_start]).strip())
                if stray and self._seen_part and not self._resyncing:
                    # Report the garbage now but keep the boundary, so the part after it is not lost.
                    del self._buf[:line_start]
                    raise CorruptFrame(f"{stray} stray bytes between multipart parts")
                del self._buf[:token_end]
                self._resyncing = False
                return stray
            # Keep a tail long enough to hold a boundary split across reads.
            keep = len(self._token) + 8
            if len(self._buf) > keep:
                stray += len(bytes(self._buf[:-keep]).strip())
                del self._buf[:-keep]
            if stray > self._max_part:
                raise CameraError("no multipart boundary in the stream: lost sync")
            self._fill()

    def _read_headers(self) -> Message:
        headers = Message()
        total = 0
        while True:
            line = self._read_line()
            if not line:
                return headers
            total += len(line)
            if total > MAX_HEADER_BYTES:
                raise CameraError("multipart part headers too long: lost sync with the stream")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip()] = value.strip()

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        body = bytes(self._buf[:size])
        del self._buf[:size]
        return body

    def _read_until_delimiter(self) -> bytes:
        scanned = 0
        while True:
            found = self._find_delimiter(max(0, scanned - len(self._token) - 8), anywhere=True)
            if found is not None:
                line_start = found[0]
                body = bytes(self._buf[:line_start])
                del self._buf[:line_start]  # the delimiter stays for the next part
                return body.removesuffix(b"\n").removesuffix(b"\r")
            scanned = len(self._buf)
            if scanned > self._max_part:
                raise CameraError(f"multipart part larger than {self._max_part} bytes: lost sync")
            self._fill()

    def next_part(self) -> tuple[str, bytes]:
        """(content type, body) of the next part. CorruptFrame: stray bytes before it or a bad header,
        the stream is still usable. CameraError: the stream ended, timed out or cannot be followed."""
        self._skip_to_delimiter()
        rest = self._read_line()
        if rest.startswith(b"--"):
            raise CameraError("stream ended (closing multipart boundary)")
        headers = self._read_headers()
        self._seen_part = True
        length_text = headers.get("Content-Length")
        if length_text is not None:
            try:
                length = int(length_text)
            except ValueError:
                length = -1
            if not 0 <= length <= self._max_part:
                self._resyncing = True
                raise CorruptFrame(f"part with unusable Content-Length {length_text!r}")
            body = self._read_exact(length)
        else:
            body = self._read_until_delimiter()
        content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        return content_type, body


class MjpegHttpSource:
    """An HTTP(S) MJPEG camera. Credentials in the URL (`http://user:pass@cam/stream`) become Basic auth
    and never appear in names, logs or errors."""

    def __init__(self, url: str, timeout_s: float, max_part_bytes: int = DEFAULT_MAX_PART_BYTES) -> None:
        self.url = url
        self.name = redact_url(url)
        self._timeout_s = timeout_s
        self._max_part = max_part_bytes
        self._conn: http.client.HTTPConnection | None = None
        self._sock: socket.socket | None = None
        self._response: http.client.HTTPResponse | None = None
        self._reader: MultipartReader | None = None
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.scheme == "https":
            return http.client.HTTPSConnection(host, parts.port, timeout=self._timeout_s)
        return http.client.HTTPConnection(host, parts.port, timeout=self._timeout_s)

    def _request_headers(self) -> dict[str, str]:
        parts = urlsplit(self.url)
        headers = {"Accept": "multipart/x-mixed-replace, image/jpeg", "User-Agent": "edgeinspect"}
        if parts.username is not None:
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")
        return headers

    def open(self) -> None:
        self.close()
        parts = urlsplit(self.url)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        conn = self._connect()
        with self._lock:
            self._conn = conn
        try:
            conn.connect()
            # Kept apart: http.client hands the socket to the response and forgets it on the connection,
            # and interrupt() needs it to wake a blocked read.
            with self._lock:
                self._sock = conn.sock
            conn.request("GET", path, headers=self._request_headers())
            response = conn.getresponse()
            with self._lock:
                self._response = response
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise CameraError(f"{self.name}: cannot connect: {exc or type(exc).__name__}") from exc
        if response.status != 200:
            self.close()
            raise CameraError(f"{self.name}: HTTP {response.status} {response.reason}")
        message = Message()
        message["Content-Type"] = response.getheader("Content-Type", "")
        boundary = message.get_param("boundary")
        if message.get_content_maintype() != "multipart" or not isinstance(boundary, str) or not boundary:
            self.close()
            raise CameraError(
                f"{self.name}: not an MJPEG stream (Content-Type {message.get('Content-Type')!r}, "
                "expected multipart/x-mixed-replace with a boundary)"
            )
        self._reader = MultipartReader(response.read1, boundary, self._max_part)

    def read(self) -> np.ndarray:
        reader = self._reader
        if reader is None:
            raise CameraError(f"{self.name}: not open")
        try:
            content_type, body = reader.next_part()
        except CameraError as exc:
            raise CameraError(f"{self.name}: {exc}") from exc
        if content_type.startswith("text/") or content_type == "application/json":
            raise CorruptFrame(f"part of type {content_type!r} is not an image")
        return decode_image(body, "MJPEG part")

    def interrupt(self) -> None:
        """Unblock a read waiting on the socket (close() alone does not wake a blocked recv)."""
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.interrupt()
        with self._lock:
            conn, self._conn = self._conn, None
            response, self._response = self._response, None
            self._sock = None
            self._reader = None
        if response is not None:
            response.close()
        if conn is not None:
            conn.close()
