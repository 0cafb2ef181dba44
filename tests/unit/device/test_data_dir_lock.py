"""One runtime per data directory: the lock refuses a live holder, names it, and outlives no process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.station.data_dir_lock import DataDirLock, DataDirLockedError

HOLDER = """
import sys, time
from device.station.data_dir_lock import DataDirLock
lock = DataDirLock(sys.argv[1])  # kept referenced: a collected lock closes its file
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def _hold_in_child(data_dir: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(DataDirLockedError, match=rf"in use by pid {child.pid} on "):
            DataDirLock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    """SIGKILL (or power loss) releases the kernel lock, so the restart after it is never blocked."""
    child = _hold_in_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    lock = DataDirLock(tmp_path)
    lock.acquire()
    assert lock.held and f'"pid": {os.getpid()}' in lock.path.read_text()
    lock.release()


def test_release_hands_the_directory_over_in_the_same_process(tmp_path: Path) -> None:
    first, second = DataDirLock(tmp_path), DataDirLock(tmp_path)
    first.acquire()
    with pytest.raises(DataDirLockedError):
        second.acquire()
    first.release()
    started = time.monotonic()
    second.acquire()
    assert second.held and time.monotonic() - started < 5
    second.release()
    assert not second.held
