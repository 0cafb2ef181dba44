"""Image archive: NG parts (and a sample of OK parts), raw and with the overlay, kept on disk by date.

Why: an operator reviewing an alert, or retraining the model on the line's own parts, needs the picture
the model judged, not only the alert. The raw frame is kept (a model learns from it); the overlay is what
a person looks at.

    <archive.path>/index.sqlite3                    one row per archived part (the only index)
    <archive.path>/YYYY-MM-DD/HHMMSSmmm_f<frame>_<NG|OK>.jpg          raw frame (UTC capture date)
    <archive.path>/YYYY-MM-DD/HHMMSSmmm_f<frame>_<NG|OK>_overlay.jpg  heatmap + boxes
    <archive.path>/YYYY-MM-DD/HHMMSSmmm_f<frame>_NG_mask.png          only when the camera gave a true mask

Writing never slows inspection: the inspection thread only offers a part to a bounded queue (a full queue
drops it and counts the drop; nothing waits), and one low-priority writer thread renders, encodes, writes
and prunes (oldest first, by age and by total size).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import queue
import random
import re
import sqlite3
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from device.config import ArchiveSettings
from device.station.alerts import ReviewState, classify_defect, iso_utc
from device.station.camera.base import Frame
from device.station.status import ComponentHealth
from vision.overlay import encode_overlay_jpeg, render_overlay
from vision.types import Box, InspectionResult

log = logging.getLogger(__name__)

Verdict = Literal["OK", "NG"]
INDEX_NAME = "index.sqlite3"
OVERLAY_JPEG_QUALITY = 85
AGE_PRUNE_PERIOD_S = 60.0
WRITER_NICE = 10  # the writer yields the CPU to capture and inference
GOOD_LABEL = "good"
# What an export does with an NG part whose alert nobody reviewed: `defect` -> test/<class>/ (with its mask),
# `good` -> test/good/, `skip` -> left out.
UnreviewedPolicy = Literal["defect", "good", "skip"]
UNREVIEWED_POLICIES: tuple[str, ...] = get_args(UnreviewedPolicy)
# The review an export went by, per image: None for an OK part with no reviewed alert.
ExportReview = Literal["confirmed", "false_alarm", "unreviewed"]
NAME_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"  # a category or label: one safe path component
_NAME = re.compile(NAME_PATTERN)
# Prometheus name -> (help, ArchiveStats field).
_GAUGES = {
    "archive_queue_depth": ("Parts waiting for the archive writer", "queue_depth"),
    "archive_dropped": ("Parts not archived because the writer queue was full (total)", "dropped"),
    "archive_written": ("Parts written to the image archive (total)", "written"),
    "archive_bytes": ("Bytes used by the image archive's files", "bytes_used"),
    "archive_items": ("Parts in the image archive", "items"),
    "archive_pruned": ("Parts pruned from the archive by age or size (total)", "pruned_items"),
    "archive_write_errors": ("Failed archive writes or prunes (total)", "write_errors"),
}
_COLUMNS = (
    "id, ts, frame_id, alert_id, verdict, score, threshold, defect_class, "
    "image_path, overlay_path, mask_path, bytes"
)
_SCHEMA = """CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,               -- capture time, Unix seconds (UTC)
    frame_id INTEGER NOT NULL,
    alert_id TEXT,                  -- NULL for OK parts
    verdict TEXT NOT NULL CHECK (verdict IN ('OK', 'NG')),
    score REAL NOT NULL,
    threshold REAL NOT NULL,
    defect_class TEXT,              -- NULL for OK parts
    image_path TEXT NOT NULL,       -- relative to the archive folder
    overlay_path TEXT NOT NULL,
    mask_path TEXT,
    bytes INTEGER NOT NULL          -- all of this part's files together
)"""


class ArchiveItemNotFound(LookupError):
    """No archived image with that id (or its file was pruned meanwhile)."""


@dataclass(frozen=True)
class ArchivedImage:
    """One archived part. `ts` is the capture time as in the alert (ISO 8601 UTC); paths are absolute."""

    id: int
    ts: str
    frame_id: int
    alert_id: str | None
    verdict: Verdict
    score: float
    threshold: float
    defect_class: str | None
    image_path: Path  # the raw frame (JPEG), for retraining
    overlay_path: Path  # heatmap and boxes (JPEG), for people
    mask_path: Path | None  # true defect mask (PNG) when the camera knew one (the simulator does)
    bytes: int


@dataclass(frozen=True)
class ArchiveRecord:
    """A judged part waiting for the writer. Holds references, not copies: nothing mutates a frame or a
    map after judging, so the inspection thread pays nothing per part."""

    captured_at: float
    frame_id: int
    image: np.ndarray  # BGR uint8
    verdict: Verdict
    score: float
    threshold: float
    defect_class: str | None = None
    alert_id: str | None = None
    anomaly_map: np.ndarray | None = None
    boxes: tuple[Box, ...] = ()
    mask: np.ndarray | None = None

    @classmethod
    def from_inspection(
        cls,
        frame: Frame,
        result: InspectionResult,
        alert_id: str | None = None,
        defect_class: str | None = None,
    ) -> ArchiveRecord:
        """Name the defect as the alert does; keep the camera's true mask of an NG part if it has one."""
        height, width = frame.image.shape[:2]
        if result.is_defect and defect_class is None:
            defect_class = classify_defect(result.boxes, width, height)
        mask = frame.truth.get("mask") if result.is_defect else None
        return cls(
            captured_at=frame.captured_at,
            frame_id=frame.frame_id,
            image=frame.image,
            verdict="NG" if result.is_defect else "OK",
            score=float(result.score),
            threshold=float(result.threshold),
            defect_class=defect_class if result.is_defect else None,
            alert_id=alert_id,
            anomaly_map=result.anomaly_map,
            boxes=tuple(result.boxes),
            mask=mask if isinstance(mask, np.ndarray) and mask.shape[:2] == (height, width) else None,
        )


@dataclass(frozen=True)
class ArchiveStats:
    """For health, metrics and `GET /archive/stats`."""

    enabled: bool
    items: int
    bytes_used: int
    max_bytes: int
    max_age_days: float
    ok_sample_rate: float
    queue_depth: int
    queue_capacity: int
    enqueued: int
    dropped: int  # offered while the queue was full
    written: int
    write_errors: int
    pruned_items: int
    pruned_bytes: int
    writer_running: bool
    last_error: str | None


@dataclass(frozen=True)
class ExportEntry:
    """Where one archived image goes in an MVTec AD export."""

    item: ArchivedImage
    label: str  # "good" or a defect class
    image_name: str  # path inside the ZIP
    mask_name: str | None
    folder: str  # destination under the category: `train/good`, `test/good` or `test/<class>`
    review: ExportReview | None  # the review state of its alert (None: an OK part with no reviewed alert)


@dataclass(frozen=True)
class ExportPlan:
    """Every image of an export and where it goes; `skipped_ids`: unreviewed NG parts left out."""

    category: str
    entries: tuple[ExportEntry, ...]
    skipped_ids: tuple[int, ...] = ()

    def counts(self) -> dict[str, int]:
        """Images per destination folder (`train/good`, `test/good`, `test/<class>`), sorted by folder."""
        return _count_folders(self.entries)


@dataclass(frozen=True)
class MvtecExport:
    """A planned export: the plan (counts for the audit and the caller) and the ZIP chunks, which read the
    files only while iterated."""

    plan: ExportPlan
    chunks: Iterator[bytes]


class ImageArchive:
    """The archive folder, its SQLite index and the writer thread. Safe to query from any thread."""

    def __init__(
        self,
        settings: ArchiveSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.root = Path(settings.path)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / INDEX_NAME, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.execute("CREATE INDEX IF NOT EXISTS images_ts ON images(ts)")
        self._db.execute("CREATE INDEX IF NOT EXISTS images_alert ON images(alert_id)")
        items, used = self._db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM images").fetchone()
        self._items, self._bytes = int(items), int(used)
        self._queue: queue.Queue[ArchiveRecord] = queue.Queue(maxsize=settings.queue_size)
        self._enqueued = self._dropped = self._written = self._errors = 0
        self._pruned_items = self._pruned_bytes = 0
        self._last_error: str | None = None
        self._accepting = True  # from now until stop(): parts offered before start() wait in the queue
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        if registry is not None:
            self._register_gauges(registry)

    # ---- the inspection thread's side: offer, never wait ---------------------------------------------
    def sampled(self, is_defect: bool) -> bool:
        """Whether a part with this verdict is to be archived: every NG part, `ok_sample_rate` of OK ones."""
        if not self.settings.enabled:
            return False
        rate = self.settings.ok_sample_rate
        return is_defect or rate >= 1.0 or (rate > 0.0 and self._rng.random() < rate)

    def submit(
        self,
        frame: Frame,
        result: InspectionResult,
        *,
        alert_id: str | None = None,
        defect_class: str | None = None,
    ) -> bool:
        """Offer a judged part (called on the inspection thread). True if queued for writing."""
        if not self._accepting or not self.sampled(result.is_defect):
            return False
        return self.enqueue(ArchiveRecord.from_inspection(frame, result, alert_id, defect_class))

    def enqueue(self, record: ArchiveRecord) -> bool:
        """Queue `record` for the writer without blocking; a full queue drops it and counts the drop."""
        if not self._accepting:
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped += 1
            return False
        self._enqueued += 1
        return True

    # ---- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (it prunes by age first)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, write what is queued (up to `timeout_s`), close the index."""
        self._accepting = False
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "archive writer still busy after %.0f s (%d queued)", timeout_s, self._queue.qsize()
                )
                return  # the daemon thread still uses the index; leave it open
        self.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queued part is written (tests, benchmarks, shutdown). False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _run(self) -> None:
        _lower_thread_priority()
        next_age_prune = 0.0
        while not (self._stopping.is_set() and self._queue.empty()):
            if time.monotonic() >= next_age_prune:
                self._guarded(self.prune)
                next_age_prune = time.monotonic() + AGE_PRUNE_PERIOD_S
            try:
                record = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._guarded(functools.partial(self.store, record))
            finally:
                self._queue.task_done()

    def _guarded(self, work: Callable[[], object]) -> None:
        """Run `work`; a failure (disk full, unwritable folder) is counted and shown in health, never raised
        into the writer loop, which keeps going."""
        try:
            work()
        except Exception as exc:
            self._errors += 1
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_error:  # once per streak, not once per part (a full disk)
                log.error("image archive: %s", message)
            self._last_error = message
        else:
            self._last_error = None

    # ---- writing ------------------------------------------------------------------------------------
    def store(self, record: ArchiveRecord) -> ArchivedImage:
        """Render, encode and write one part now, index it, prune to the size bound (the writer thread's
        work; also usable directly where there is no inspection thread to protect)."""
        raw = _encode(".jpg", record.image, self.settings.jpeg_quality)
        overlay_image = record.image
        if record.anomaly_map is not None:
            overlay_image = render_overlay(record.image, record.anomaly_map, record.threshold, record.boxes)
        overlay = encode_overlay_jpeg(overlay_image, OVERLAY_JPEG_QUALITY)
        mask = None
        if record.mask is not None:
            mask = _encode(".png", np.where(np.asarray(record.mask) > 0, 255, 0).astype(np.uint8), None)
        day, stem = self._free_stem(record)
        files = {f"{day}/{stem}.jpg": raw, f"{day}/{stem}_overlay.jpg": overlay}
        if mask is not None:
            files[f"{day}/{stem}_mask.png"] = mask
        (self.root / day).mkdir(parents=True, exist_ok=True)
        try:
            for name, data in files.items():
                (self.root / name).write_bytes(data)
        except OSError:  # e.g. a full disk: leave no file that the index does not account for
            for name in files:
                (self.root / name).unlink(missing_ok=True)
            raise
        size = sum(len(data) for data in files.values())
        names = list(files)
        row = (
            record.captured_at,
            record.frame_id,
            record.alert_id,
            record.verdict,
            record.score,
            record.threshold,
            record.defect_class,
            names[0],
            names[1],
            names[2] if mask is not None else None,
            size,
        )
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO images(ts, frame_id, alert_id, verdict, score, threshold, defect_class, "
                "image_path, overlay_path, mask_path, bytes) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            item_id = int(cursor.lastrowid or 0)
            self._items += 1
            self._bytes += size
            self._written += 1
        if self._bytes > self.settings.max_bytes:
            self._prune_size()
        return self._item((item_id, *row))

    def _free_stem(self, record: ArchiveRecord) -> tuple[str, str]:
        """`YYYY-MM-DD`, `HHMMSSmmm_f<frame>_<verdict>` (UTC capture time); a suffix if the name is taken
        (frame ids restart with the process)."""
        moment = datetime.fromtimestamp(record.captured_at, tz=timezone.utc)
        day = moment.strftime("%Y-%m-%d")
        base = (
            f"{moment.strftime('%H%M%S')}{moment.microsecond // 1000:03d}_f{record.frame_id}_{record.verdict}"
        )
        stem, n = base, 1
        while (self.root / day / f"{stem}.jpg").exists():
            n += 1
            stem = f"{base}_{n}"
        return day, stem

    # ---- pruning ------------------------------------------------------------------------------------
    def prune(self) -> int:
        """Remove parts older than `max_age_days`, then the oldest until under `max_bytes`. Returns how
        many parts were removed (also counted in `stats().pruned_items`)."""
        cutoff = self._clock() - self.settings.max_age_days * 86_400.0
        removed = 0
        while True:
            rows = self._oldest(200, before=cutoff)
            if not rows:
                break
            removed += self._remove(rows)
        return removed + self._prune_size()

    def _prune_size(self) -> int:
        removed = 0
        while self._bytes > self.settings.max_bytes:
            rows = self._oldest(50)
            if not rows:
                break
            excess, take = self._bytes - self.settings.max_bytes, []
            for row in rows:
                take.append(row)
                excess -= int(row[-1])
                if excess <= 0:
                    break
            removed += self._remove(take)
        return removed

    def _oldest(self, limit: int, before: float | None = None) -> list[tuple[Any, ...]]:
        where, params = ("WHERE ts < ?", [before]) if before is not None else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, image_path, overlay_path, mask_path, bytes FROM images {where} "
                "ORDER BY ts, id LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [tuple(row) for row in rows]

    def _remove(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Delete the files first, then the rows: a crash in between leaves rows whose files are gone
        (read as 404), never files nothing accounts for."""
        days = set()
        for _, *paths, _size in rows:
            for rel in paths:
                if rel:
                    (self.root / rel).unlink(missing_ok=True)
                    days.add((self.root / rel).parent)
        ids = [int(row[0]) for row in rows]
        freed = sum(int(row[-1]) for row in rows)
        with self._lock:
            self._db.execute(f"DELETE FROM images WHERE id IN ({','.join('?' * len(ids))})", ids)
            self._items -= len(ids)
            self._bytes -= freed
            self._pruned_items += len(ids)
            self._pruned_bytes += freed
        for day in days:
            with contextlib.suppress(OSError):
                day.rmdir()  # only once empty
        return len(ids)

    # ---- reading ------------------------------------------------------------------------------------
    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        verdict: Verdict | None = None,
        defect_class: str | None = None,
        alert_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[ArchivedImage]]:
        """(total matching, one page newest first). Naive datetimes are UTC; bounds are inclusive."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit}, {offset}")
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("ts", ">=", _epoch(since)),
            ("ts", "<=", _epoch(until)),
            ("score", ">=", _finite(min_score, "min_score")),
            ("score", "<=", _finite(max_score, "max_score")),
            ("verdict", "=", verdict),
            ("defect_class", "=", defect_class),
            ("alert_id", "=", alert_id),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM images {where}", params).fetchone()[0])
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM images {where} ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return total, [self._item(tuple(row)) for row in rows]

    def get(self, item_id: int) -> ArchivedImage | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else self._item(tuple(row))

    def get_many(self, item_ids: Sequence[int]) -> list[ArchivedImage]:
        """In the order asked, duplicates once; ArchiveItemNotFound names every unknown id."""
        wanted = list(dict.fromkeys(item_ids))
        found = {item.id: item for item in (self.get(i) for i in wanted) if item is not None}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise ArchiveItemNotFound(f"no archived image with id {', '.join(map(str, missing))}")
        return [found[i] for i in wanted]

    def find_by_alert(self, alert_id: str) -> ArchivedImage | None:
        """The archived image of an alert (None if it was not archived, was dropped, or is pruned)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM images WHERE alert_id = ? ORDER BY id DESC LIMIT 1", (alert_id,)
            ).fetchone()
        return None if row is None else self._item(tuple(row))

    def read_image(self, item_id: int, overlay: bool = False) -> bytes:
        """The raw frame (or the overlay) as JPEG bytes; ArchiveItemNotFound if unknown or pruned."""
        item = self.get(item_id)
        if item is None:
            raise ArchiveItemNotFound(f"no archived image with id {item_id}")
        path = item.overlay_path if overlay else item.image_path
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ArchiveItemNotFound(f"archived image {item_id}: its file was pruned") from None

    def _item(self, row: tuple[Any, ...]) -> ArchivedImage:
        (item_id, ts, frame_id, alert_id, verdict, score, threshold, cls, image, overlay, mask, size) = row
        return ArchivedImage(
            id=int(item_id),
            ts=iso_utc(float(ts)),
            frame_id=int(frame_id),
            alert_id=alert_id,
            verdict="NG" if verdict == "NG" else "OK",
            score=float(score),
            threshold=float(threshold),
            defect_class=cls,
            image_path=self.root / image,
            overlay_path=self.root / overlay,
            mask_path=self.root / mask if mask else None,
            bytes=int(size),
        )

    # ---- export -------------------------------------------------------------------------------------
    def export_mvtec(
        self,
        items: Sequence[ArchivedImage],
        category: str,
        labels: Mapping[int, str] | None = None,
        *,
        reviews: Mapping[str, ReviewState] | None = None,
        unreviewed: UnreviewedPolicy = "defect",
    ) -> MvtecExport:
        """A ZIP in the MVTec AD layout, as chunks to stream, placed as `plan_mvtec_export` says. Checked
        now (ValueError for a bad category, label or policy, ArchiveItemNotFound for a label naming an item
        not exported); written while iterated."""
        plan = plan_mvtec_export(items, category, labels, reviews=reviews, unreviewed=unreviewed)
        return MvtecExport(plan, _zip_chunks(plan))

    # ---- views --------------------------------------------------------------------------------------
    def stats(self) -> ArchiveStats:
        return ArchiveStats(
            enabled=self.settings.enabled,
            items=self._items,
            bytes_used=self._bytes,
            max_bytes=self.settings.max_bytes,
            max_age_days=self.settings.max_age_days,
            ok_sample_rate=self.settings.ok_sample_rate,
            queue_depth=self._queue.qsize(),
            queue_capacity=self.settings.queue_size,
            enqueued=self._enqueued,
            dropped=self._dropped,
            written=self._written,
            write_errors=self._errors,
            pruned_items=self._pruned_items,
            pruned_bytes=self._pruned_bytes,
            writer_running=self._thread is not None and self._thread.is_alive(),
            last_error=self._last_error,
        )

    def health(self) -> ComponentHealth:
        """Degraded when the last write failed or the writer died; drops under load are shown, not failed
        (the archive is evidence, not the line)."""
        s = self.stats()
        writer_ok = self._thread is None or s.writer_running or self._stopping.is_set()
        detail = (
            f"{s.items} images, {s.bytes_used / 1e6:.1f} of {s.max_bytes / 1e6:.0f} MB, "
            f"{s.queue_depth} queued, {s.dropped} dropped (queue full), {s.pruned_items} pruned"
        )
        if not s.enabled:
            detail = "off; " + detail
        if s.last_error:
            detail += f"; last error: {s.last_error}"
        return ComponentHealth(ok=writer_ok and s.last_error is None, detail=detail)

    def _register_gauges(self, registry: CollectorRegistry) -> None:
        """Read at scrape time, so the metrics never lag the archive."""
        for name, (help_text, field) in _GAUGES.items():
            gauge = Gauge(f"edgeinspect_{name}", help_text, registry=registry)
            gauge.set_function(functools.partial(self._stat, field))

    def _stat(self, field: str) -> float:
        return float(getattr(self.stats(), field))


# ---- MVTec AD export --------------------------------------------------------------------------------
def plan_mvtec_export(
    items: Sequence[ArchivedImage],
    category: str,
    labels: Mapping[int, str] | None = None,
    *,
    reviews: Mapping[str, ReviewState] | None = None,
    unreviewed: UnreviewedPolicy = "defect",
) -> ExportPlan:
    """Where each image goes (a pure function: `reviews` maps alert id -> the operator's review state).

    - an explicit `labels` entry wins: `good` -> `train/good/`, anything else -> `test/<label>/`;
    - an OK part -> `train/good/`;
    - an NG part whose alert was reviewed `confirmed` -> `test/<defect_class or anomaly>/`;
    - reviewed `false_alarm` -> `test/good/` (a good part the model rejected: no mask);
    - unreviewed (no review, no alert, or its alert left the history) -> as `unreviewed` says: `defect` like
      confirmed, `good` like a false alarm, `skip` left out (`ExportPlan.skipped_ids`).

    A defect image's true mask goes to `<category>/ground_truth/<class>/<id>_mask.png` only if the archive
    has one. Files are named by archive id, so names never collide."""
    if not _NAME.fullmatch(category):
        raise ValueError(f"category must match {NAME_PATTERN}, got {category!r}")
    if unreviewed not in UNREVIEWED_POLICIES:
        raise ValueError(f"unreviewed must be one of {', '.join(UNREVIEWED_POLICIES)}, got {unreviewed!r}")
    labels = dict(labels or {})
    reviews = reviews or {}
    unique = list({item.id: item for item in items}.values())
    known = {item.id for item in unique}
    strangers = sorted(set(labels) - known)
    if strangers:
        raise ArchiveItemNotFound(f"labels name items not in this export: {', '.join(map(str, strangers))}")
    for item_id, label in labels.items():
        if not _NAME.fullmatch(label):
            raise ValueError(f"label of item {item_id} must match {NAME_PATTERN}, got {label!r}")
    entries: list[ExportEntry] = []
    skipped: list[int] = []
    for item in sorted(unique, key=lambda i: (i.ts, i.id)):
        review = _review_of(item, reviews)
        stem = f"{item.id:08d}"
        if item.id in labels:
            label = labels[item.id]
            folder = "train/good" if label == GOOD_LABEL else f"test/{label}"
        elif item.verdict == "OK":
            label, folder = GOOD_LABEL, "train/good"
        elif review == "false_alarm" or (review == "unreviewed" and unreviewed == "good"):
            label, folder = GOOD_LABEL, "test/good"
        elif review == "unreviewed" and unreviewed == "skip":
            skipped.append(item.id)
            continue
        else:  # confirmed, or unreviewed taken as a defect
            label = item.defect_class or "anomaly"
            folder = f"test/{label}"
        mask = None
        if label != GOOD_LABEL and item.mask_path is not None:
            mask = f"{category}/ground_truth/{label}/{stem}_mask.png"
        entries.append(ExportEntry(item, label, f"{category}/{folder}/{stem}.jpg", mask, folder, review))
    return ExportPlan(category, tuple(entries), tuple(skipped))


def _review_of(item: ArchivedImage, reviews: Mapping[str, ReviewState]) -> ExportReview | None:
    """The review of the item's alert; `unreviewed` for an NG part without one, None for an OK part."""
    if item.alert_id is not None and item.alert_id in reviews:
        return reviews[item.alert_id]
    return "unreviewed" if item.verdict == "NG" else None


def _count_folders(entries: Sequence[ExportEntry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.folder] = counts.get(entry.folder, 0) + 1
    return dict(sorted(counts.items()))


class _ChunkSink:
    """A write-only, unseekable file for `zipfile`: what is written is handed out as chunks to stream."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _zip_chunks(plan: ExportPlan) -> Iterator[bytes]:
    """Stream the ZIP file by file (JPEGs stored as they are); `manifest.json` last, naming the images
    pruned while the export ran, if any, and counting the images written per destination folder."""
    sink = _ChunkSink()
    manifest: list[dict[str, Any]] = []
    written: list[ExportEntry] = []
    missing: list[int] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for entry in plan.entries:
            try:
                image = entry.item.image_path.read_bytes()
                mask = entry.item.mask_path.read_bytes() if entry.mask_name and entry.item.mask_path else None
            except FileNotFoundError:
                missing.append(entry.item.id)
                continue
            archive.writestr(entry.image_name, image)
            if mask is not None and entry.mask_name:
                archive.writestr(entry.mask_name, mask, compress_type=zipfile.ZIP_DEFLATED)
            manifest.append(_manifest_row(entry, mask is not None))
            written.append(entry)
            yield sink.take()
        summary = {
            "format": "MVTec AD",
            "category": plan.category,
            "images": manifest,
            "counts": _count_folders(written),
            "missing_ids": missing,
            "skipped_unreviewed_ids": list(plan.skipped_ids),
            "masks": "ground_truth masks are included only for images whose camera delivered a true mask "
            "(the simulator does); other defect images have none and need labelling before pixel metrics",
        }
        archive.writestr("manifest.json", json.dumps(summary, indent=1), compress_type=zipfile.ZIP_DEFLATED)
    yield sink.take()


def _manifest_row(entry: ExportEntry, has_mask: bool) -> dict[str, Any]:
    row = {k: v for k, v in asdict(entry.item).items() if not k.endswith("_path")}
    return {
        **row,
        "label": entry.label,
        "folder": entry.folder,
        "review": entry.review,
        "file": entry.image_name,
        "mask": entry.mask_name if has_mask else None,
    }


# ---- helpers ----------------------------------------------------------------------------------------
def _encode(ext: str, image: np.ndarray, quality: int | None) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode a {image.dtype} {image.shape} image as {ext}")
    return bytes(buf.tobytes())


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value).timestamp()


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def _lower_thread_priority() -> None:
    """Linux: a thread has its own nice value, so this lowers the writer alone, never inference."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: run at normal priority
        log.debug("archive writer priority unchanged: %s", exc)
