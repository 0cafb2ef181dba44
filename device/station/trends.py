"""Trends of the line over the last days: defect rate, score distribution, latency, per shift.

Every judged part goes into a per-minute bucket (parts, defects, a log-binned histogram of scores and one of
latencies). Histograms, not samples, so percentiles of any span (an hour, a shift, a week) come from merged
buckets at a fixed memory cost. Buckets live in memory and are written to a small SQLite file every
`trends.persist_interval_s` and at stop, so a restart keeps the history; buckets older than
`trends.retention_days` are dropped.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from device.config import TrendSettings

log = logging.getLogger(__name__)

BUCKET_S = 60
# Coarser series for long windows, so a chart never gets more than MAX_POINTS points.
SERIES_STEPS_S = (60, 300, 900, 3600)
MAX_POINTS = 240  # a point every few pixels on a tablet-sized chart
SCORE_BINS_PER_DECADE = 20  # bins 12% wide: enough to see the shape of the score distribution
LATENCY_BINS_PER_DECADE = 40  # bins 6% wide: p50/p99 from the histogram are within 6%
VALUE_MIN, VALUE_MAX = 1e-6, 1e9  # scores and latencies are clamped into this range before binning


def log_bin(value: float, per_decade: int) -> int:
    """The log-spaced bin of `value`; bin i spans [10**(i/per_decade), 10**((i+1)/per_decade))."""
    clamped = min(max(value, VALUE_MIN), VALUE_MAX) if math.isfinite(value) else VALUE_MAX
    return math.floor(math.log10(clamped) * per_decade)


def bin_edge(index: float, per_decade: int) -> float:
    """Lower edge of bin `index` (a fractional index gives a point inside the bin)."""
    return float(10 ** (index / per_decade))


def histogram_quantile(counts: Counter[int], q: float, per_decade: int) -> float | None:
    """The q-quantile (0..1) of a log-binned histogram, as the geometric centre of its bin; None if empty."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen > rank:
            return bin_edge(index + 0.5, per_decade)
    return bin_edge(max(counts) + 0.5, per_decade)


@dataclass
class Bucket:
    """What was judged in one minute (or, merged, in any span)."""

    frames: int = 0
    defects: int = 0
    scores: Counter[int] = field(default_factory=Counter)
    latencies: Counter[int] = field(default_factory=Counter)

    def add(self, score: float, is_defect: bool, latency_ms: float) -> None:
        self.frames += 1
        self.defects += int(is_defect)
        self.scores[log_bin(score, SCORE_BINS_PER_DECADE)] += 1
        self.latencies[log_bin(latency_ms, LATENCY_BINS_PER_DECADE)] += 1

    def merge(self, other: Bucket) -> None:
        self.frames += other.frames
        self.defects += other.defects
        self.scores.update(other.scores)
        self.latencies.update(other.latencies)

    def to_row(self) -> tuple[int, int, str, str]:
        return self.frames, self.defects, json.dumps(dict(self.scores)), json.dumps(dict(self.latencies))

    @classmethod
    def from_row(cls, frames: int, defects: int, scores: str, latencies: str) -> Bucket:
        return cls(
            frames=int(frames),
            defects=int(defects),
            scores=Counter({int(k): int(v) for k, v in json.loads(scores).items()}),
            latencies=Counter({int(k): int(v) for k, v in json.loads(latencies).items()}),
        )


# ---- the report (GET /trends) -------------------------------------------------------------------------
class Aggregate(BaseModel):
    """Totals of a span: parts, defects, defect rate and latency/score percentiles from the histograms."""

    frames: int
    defects: int
    defect_rate: float | None = Field(None, description="defects / frames; null without parts.")
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    score_p50: float | None = None
    score_p99: float | None = None


class ShiftAggregate(Aggregate):
    label: str = Field(..., description="e.g. `06:00-14:00`")
    start: str = Field(..., description="Shift start, ISO 8601 with the plant's UTC offset.")
    end: str
    complete: bool = Field(..., description="False while the shift runs or when the window cuts it.")


class TrendSeries(BaseModel):
    """Aligned arrays, one entry per `bucket_s` step; `t` is the step's start (Unix seconds)."""

    t: list[int]
    frames: list[int]
    defects: list[int]
    defect_rate: list[float | None]
    latency_p50_ms: list[float | None]
    latency_p99_ms: list[float | None]


class ScoreHistogram(BaseModel):
    """Scores in the window: `counts[i]` parts scored in [edges[i], edges[i+1]) (log-spaced bins)."""

    edges: list[float]
    counts: list[int]


class TrendReport(BaseModel):
    window_s: int
    bucket_s: int
    since: float = Field(..., description="Window start, Unix seconds.")
    until: float
    threshold: float = Field(..., description="The threshold in force now.")
    timezone: str
    shift_starts: list[str]
    totals: Aggregate
    series: TrendSeries
    score_histogram: ScoreHistogram
    shifts: list[ShiftAggregate]


def aggregate(bucket: Bucket) -> Aggregate:
    return Aggregate(
        frames=bucket.frames,
        defects=bucket.defects,
        defect_rate=bucket.defects / bucket.frames if bucket.frames else None,
        latency_p50_ms=histogram_quantile(bucket.latencies, 0.5, LATENCY_BINS_PER_DECADE),
        latency_p99_ms=histogram_quantile(bucket.latencies, 0.99, LATENCY_BINS_PER_DECADE),
        score_p50=histogram_quantile(bucket.scores, 0.5, SCORE_BINS_PER_DECADE),
        score_p99=histogram_quantile(bucket.scores, 0.99, SCORE_BINS_PER_DECADE),
    )


def score_histogram(bucket: Bucket, threshold: float) -> ScoreHistogram:
    """Contiguous bins from the lowest to the highest score seen, widened to hold the threshold."""
    if not bucket.scores:
        return ScoreHistogram(edges=[], counts=[])
    wanted = [*bucket.scores, log_bin(threshold, SCORE_BINS_PER_DECADE)]
    low, high = min(wanted), max(wanted)
    indices = range(low, high + 1)
    return ScoreHistogram(
        edges=[bin_edge(i, SCORE_BINS_PER_DECADE) for i in [*indices, high + 1]],
        counts=[bucket.scores.get(i, 0) for i in indices],
    )


def series_step(window_s: int) -> int:
    """The finest step that keeps a window within MAX_POINTS points."""
    return next((s for s in SERIES_STEPS_S if window_s / s <= MAX_POINTS), SERIES_STEPS_S[-1])


def shift_boundaries(starts: list[str], zone: tzinfo, since: float, until: float) -> list[datetime]:
    """Every shift start (aware datetimes in `zone`) from the one running at `since` to the first after
    `until`; a shift ends where the next begins."""
    clock = sorted(tuple(int(p) for p in s.split(":")) for s in starts)
    first = datetime.fromtimestamp(since, zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(until, zone).date() + timedelta(days=1)
    bounds: list[datetime] = []
    day: date = first
    while day <= last:
        bounds.extend(datetime(day.year, day.month, day.day, h, m, tzinfo=zone) for h, m in clock)
        day += timedelta(days=1)
    running = max(i for i, b in enumerate(bounds) if b.timestamp() <= since)
    after = min(i for i, b in enumerate(bounds) if b.timestamp() > until)
    return bounds[running : after + 1]


def resolve_zone(name: str | None) -> tuple[tzinfo, str]:
    """The plant's time zone (`trends.timezone`, else the box's local zone) and a name to show."""
    if name:
        return ZoneInfo(name), name
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local, datetime.now().astimezone().tzname() or "local"


class TrendRecorder:
    """Thread-safe: `record` from the inspection thread, `report` from API threads, `flush` from its own
    thread (`start`) or the caller. `path=None` keeps everything in memory."""

    def __init__(self, settings: TrendSettings, path: str | Path | None = None) -> None:
        self.settings = settings
        self.path = Path(path) if path is not None else None
        self._zone, self._zone_name = resolve_zone(settings.timezone)
        self._lock = threading.Lock()
        self._buckets: dict[int, Bucket] = {}
        self._dirty: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self._db = self._open_db(self.path)
            self._load()

    # ---- recording ---------------------------------------------------------------------------------
    def record(self, ts: float, score: float, is_defect: bool, latency_ms: float) -> None:
        """One judged part, captured at Unix time `ts`."""
        minute = int(ts // BUCKET_S)
        with self._lock:
            bucket = self._buckets.get(minute)
            if bucket is None:
                bucket = self._buckets[minute] = Bucket()
                self._prune(minute)
            bucket.add(score, is_defect, latency_ms)
            self._dirty.add(minute)

    def _prune(self, newest_minute: int) -> None:
        cutoff = newest_minute - self._retention_minutes()
        for minute in [m for m in self._buckets if m < cutoff]:
            del self._buckets[minute]
            self._dirty.discard(minute)

    def _retention_minutes(self) -> int:
        return self.settings.retention_days * 24 * 60

    # ---- reading -----------------------------------------------------------------------------------
    def report(self, window_s: int, threshold: float, now: float | None = None) -> TrendReport:
        """Series, score histogram and per-shift aggregates over the last `window_s` seconds."""
        retention_s = self.settings.retention_days * 86400
        if not BUCKET_S <= window_s <= retention_s:
            raise ValueError(
                f"window must be between 1 minute and the {self.settings.retention_days} days kept "
                f"(trends.retention_days), got {window_s} s"
            )
        until = time.time() if now is None else now
        since = until - window_s
        with self._lock:
            copies = {
                m: _copy(b)
                for m, b in self._buckets.items()
                if since < (m + 1) * BUCKET_S and m * BUCKET_S <= until
            }
        total = Bucket()
        for bucket in copies.values():
            total.merge(bucket)
        step = series_step(window_s)
        return TrendReport(
            window_s=window_s,
            bucket_s=step,
            since=since,
            until=until,
            threshold=threshold,
            timezone=self._zone_name,
            shift_starts=list(self.settings.shift_starts),
            totals=aggregate(total),
            series=_series(copies, since, until, step),
            score_histogram=score_histogram(total, threshold),
            shifts=self._shifts(copies, since, until),
        )

    def _shifts(self, buckets: dict[int, Bucket], since: float, until: float) -> list[ShiftAggregate]:
        bounds = shift_boundaries(self.settings.shift_starts, self._zone, since, until)
        shifts = []
        for start, end in itertools.pairwise(bounds):
            lo, hi = start.timestamp(), end.timestamp()
            merged = Bucket()
            for minute, bucket in buckets.items():
                if lo <= minute * BUCKET_S < hi:
                    merged.merge(bucket)
            shifts.append(
                ShiftAggregate(
                    **aggregate(merged).model_dump(),
                    label=f"{start:%H:%M}-{end:%H:%M}",
                    start=start.isoformat(),
                    end=end.isoformat(),
                    complete=lo >= since and hi <= until,
                )
            )
        return shifts

    # ---- persistence -------------------------------------------------------------------------------
    @staticmethod
    def _open_db(path: Path) -> sqlite3.Connection:
        """Open (or start) the trends file; a corrupt one is moved aside: trends are never worth a stop."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _connect(path)
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            log.warning("trends file %s is unreadable (%s); moved to %s", path, exc, aside)
            path.rename(aside)
            return _connect(path)

    def _load(self) -> None:
        assert self._db is not None
        cutoff = int(time.time() // BUCKET_S) - self._retention_minutes()
        rows = self._db.execute(
            "SELECT minute, frames, defects, scores, latencies FROM buckets WHERE minute >= ?", (cutoff,)
        ).fetchall()
        with self._lock:
            for minute, *row in rows:
                self._buckets[int(minute)] = Bucket.from_row(*row)

    def flush(self) -> int:
        """Write the buckets changed since the last flush and drop expired rows; return how many written."""
        if self._db is None:
            return 0
        with self._lock:
            rows = [(m, *self._buckets[m].to_row()) for m in sorted(self._dirty) if m in self._buckets]
            self._dirty.clear()
            newest = max(self._buckets, default=int(time.time() // BUCKET_S))
        cutoff = newest - self._retention_minutes()
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("DELETE FROM buckets WHERE minute < ?", (cutoff,))
        return len(rows)

    def start(self) -> None:
        """Flush every `persist_interval_s` on a daemon thread until `close`."""
        if self._db is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._flush_loop, name="trends-flush", daemon=True)
        self._thread.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.settings.persist_interval_s):
            try:
                self.flush()
            except sqlite3.Error:  # a full disk must not take the line down; retried next time
                log.exception("writing trends failed")

    def close(self) -> None:
        """Stop the flush thread, write what is left, close the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._db is not None:
            try:
                self.flush()
            except sqlite3.Error:
                log.exception("writing trends at stop failed")
            self._db.close()
            self._db = None


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS buckets (minute INTEGER PRIMARY KEY, frames INTEGER NOT NULL, "
        "defects INTEGER NOT NULL, scores TEXT NOT NULL, latencies TEXT NOT NULL)"
    )
    db.execute("SELECT count(*) FROM buckets").fetchone()  # a corrupt file fails here, not later
    return db


def _copy(bucket: Bucket) -> Bucket:
    return Bucket(bucket.frames, bucket.defects, Counter(bucket.scores), Counter(bucket.latencies))


def _series(buckets: dict[int, Bucket], since: float, until: float, step: int) -> TrendSeries:
    """One point per `step` seconds (aligned to multiples of it), empty steps included as gaps."""
    first = int(since // step) * step
    starts = list(range(first, int(until) + 1, step))
    merged = {t: Bucket() for t in starts}
    for minute, bucket in buckets.items():
        slot = (minute * BUCKET_S) // step * step
        if slot in merged:
            merged[slot].merge(bucket)
    points = [aggregate(merged[t]) for t in starts]
    return TrendSeries(
        t=starts,
        frames=[p.frames for p in points],
        defects=[p.defects for p in points],
        defect_rate=[p.defect_rate for p in points],
        latency_p50_ms=[p.latency_p50_ms for p in points],
        latency_p99_ms=[p.latency_p99_ms for p in points],
    )
