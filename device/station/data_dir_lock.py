"""One runtime per data directory: an exclusive lock that names its holder.

Two runtimes on one data directory would both drain one outbox, double-publish alerts and disagree about the
spool. `DataDirLock` takes an exclusive `flock` on `<data_dir>/.edgeinspect.lock` and writes who holds it
(pid, host, command, since). The kernel drops the lock when the holder exits, however it exits (SIGKILL and
power loss included), so a stale file never blocks a restart; only a live holder does.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

LOCK_FILENAME = ".edgeinspect.lock"


class DataDirLockedError(RuntimeError):
    """Another live process holds the data directory."""


class DataDirLock:
    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / LOCK_FILENAME
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise `DataDirLockedError` naming the holder; never waits."""
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115  (held open for as long as the lock is)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(self.path)
            handle.close()
            raise DataDirLockedError(
                f"data directory {self.path.parent} is in use by {holder}; stop that instance first, "
                "or give this one its own data_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder_record()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()

    @property
    def held(self) -> bool:
        return self._handle is not None


def _holder_record() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv)[:200],
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _describe(path: Path) -> str:
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another process (holder unknown)"
    return (
        f"pid {record.get('pid')} on {record.get('host', '?')} since {record.get('since', '?')} "
        f"({record.get('command', '?')})"
    )
