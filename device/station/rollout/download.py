"""Fetch a release file over HTTP(S): bounded in size and time, retried on network errors only.

The size and sha256 promised by the signed manifest are checked here, so a file that is too large never
fills the disk and a changed file is refused before anything else sees it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """The file could not be fetched (after retries); the message says why."""


class IntegrityError(ValueError):
    """The file was fetched but is not the one the manifest names (size or sha256): never retried."""


@dataclass(frozen=True)
class DownloadLimits:
    timeout_s: float = 30.0
    retries: int = 3
    max_bytes: int = 500_000_000
    ca_file: str | None = None  # a private CA for https:// (the system store otherwise)
    backoff_s: float = 0.5


def fetch_verified(url: str, size: int, sha256: str, limits: DownloadLimits) -> bytes:
    """The file at `url`, exactly `size` bytes hashing to `sha256`; raises DownloadError / IntegrityError."""
    if size > limits.max_bytes:
        raise IntegrityError(f"release is {size} bytes; this station accepts at most {limits.max_bytes}")
    last: Exception | None = None
    for attempt in range(1, limits.retries + 2):
        try:
            data = _fetch_once(url, size, limits)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, short reads
            last = exc
            log.warning("download %s failed (attempt %d): %s", url, attempt, exc)
            time.sleep(limits.backoff_s * attempt)
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"sha256 mismatch: the manifest says {sha256}, the downloaded file is {actual} "
                "(tampered with or corrupted in transit)"
            )
        return data
    raise DownloadError(f"cannot download {url} after {limits.retries + 1} attempt(s): {last}")


def _fetch_once(url: str, size: int, limits: DownloadLimits) -> bytes:
    context = ssl.create_default_context(cafile=limits.ca_file) if url.startswith("https://") else None
    request = urllib.request.Request(url, headers={"User-Agent": "edgeinspect-station"})
    with urllib.request.urlopen(request, timeout=limits.timeout_s, context=context) as response:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) != size:
            raise IntegrityError(f"server sends {declared} bytes; the manifest says {size}")
        chunks: list[bytes] = []
        received = 0
        while chunk := response.read(CHUNK):
            received += len(chunk)
            if received > size:
                raise IntegrityError(f"server sent more than the {size} bytes the manifest names")
            chunks.append(chunk)
    if received != size:  # the connection ended early: worth another try
        raise ConnectionError(f"received {received} of {size} bytes")
    return b"".join(chunks)
