"""Capturing a new product's good parts: every n-th frame, whole files, strike-outs, refusals."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.station.camera.base import Frame
from device.station.product_capture import ProductCapture


def _frame(i: int) -> Frame:
    image = np.full((32, 48, 3), i % 256, np.uint8)
    return Frame(frame_id=i, captured_at=time.time(), captured_mono=time.monotonic(), image=image)


def _offer_until(job: ProductCapture, frames: range, every_n: int = 1) -> None:
    """Offer frames one by one, letting the writer keep up (the queue drops what it cannot hold)."""
    for i in frames:
        before = job.status().captured
        job.offer(_frame(i))
        if i % every_n == 0 and job.running:  # a kept frame: wait until it is on disk
            deadline = time.monotonic() + 10
            while job.status().captured == before and job.running and time.monotonic() < deadline:
                time.sleep(0.005)


def test_keeps_every_nth_frame_until_the_target_in_the_mvtec_layout(tmp_path: Path) -> None:
    job = ProductCapture(tmp_path, "housing", count=4, every_n=3)
    _offer_until(job, range(30), every_n=3)
    assert job.wait(10)
    status = job.status()
    assert (status.state, status.kept, status.captured) == ("done", 4, 4)
    assert Path(status.folder) == tmp_path / "housing" / "train" / "good"
    assert status.images == ["0000.png", "0001.png", "0002.png", "0003.png"]
    values = [int(cv2.imread(str(Path(status.folder) / name))[0, 0, 0]) for name in status.images]
    assert values == [0, 3, 6, 9]  # frames 0, 3, 6, 9: every third, in order, written whole
    assert not list(Path(status.folder).glob(".*partial"))


def test_a_struck_capture_is_deleted_and_replaced_by_one_more_part(tmp_path: Path) -> None:
    job = ProductCapture(tmp_path, "p", count=3, every_n=1)
    _offer_until(job, range(2))
    job.strike("0000.png")
    _offer_until(job, range(2, 10))
    assert job.wait(10)
    status = job.status()
    assert status.state == "done" and status.kept == 3 and status.struck == 1
    assert status.images == ["0001.png", "0002.png", "0003.png"]
    with pytest.raises(ValueError, match="no captured image"):
        job.strike("0000.png")
    with pytest.raises(KeyError):
        job.image_path("../../etc.png")


def test_cancel_keeps_what_was_captured_and_a_used_folder_is_refused(tmp_path: Path) -> None:
    job = ProductCapture(tmp_path, "p", count=100, every_n=1)
    _offer_until(job, range(3))
    job.cancel()
    assert job.wait(10)
    job.offer(_frame(99))  # after a cancel nothing more is kept
    status = job.status()
    assert status.state == "cancelled" and status.kept == 3
    with pytest.raises(ValueError, match="already holds images"):
        ProductCapture(tmp_path, "p", count=5, every_n=1)
    with pytest.raises(ValueError, match="at least 1"):
        ProductCapture(tmp_path, "q", count=0, every_n=1)
