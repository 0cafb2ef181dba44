"""Trend buckets: per-minute counts, log-binned histograms, series steps, shifts, persistence."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from device.config import TrendSettings
from device.station.trends import (
    LATENCY_BINS_PER_DECADE,
    Bucket,
    TrendRecorder,
    bin_edge,
    histogram_quantile,
    log_bin,
    series_step,
    shift_boundaries,
)

UTC_SHIFTS = TrendSettings(shift_starts=["06:00", "14:00", "22:00"], timezone="UTC")


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_parts_fall_into_the_minute_they_were_captured_in() -> None:
    recorder = TrendRecorder(UTC_SHIFTS)
    recorder.record(utc("2024-05-01T10:00:05"), 0.2, False, 10.0)
    recorder.record(utc("2024-05-01T10:00:59"), 0.9, True, 12.0)
    recorder.record(utc("2024-05-01T10:01:00"), 0.3, False, 11.0)
    report = recorder.report(600, threshold=0.5, now=utc("2024-05-01T10:05:00"))
    assert report.bucket_s == 60
    by_minute = dict(zip(report.series.t, report.series.frames, strict=True))
    assert by_minute[int(utc("2024-05-01T10:00:00"))] == 2
    assert by_minute[int(utc("2024-05-01T10:01:00"))] == 1
    assert by_minute[int(utc("2024-05-01T10:02:00"))] == 0
    rates = dict(zip(report.series.t, report.series.defect_rate, strict=True))
    assert rates[int(utc("2024-05-01T10:00:00"))] == 0.5
    assert rates[int(utc("2024-05-01T10:02:00"))] is None  # no parts: a gap, not a 0 % rate
    assert report.totals.frames == 3 and report.totals.defects == 1


def test_parts_outside_the_window_are_left_out() -> None:
    recorder = TrendRecorder(UTC_SHIFTS)
    recorder.record(utc("2024-05-01T08:00:00"), 0.2, False, 10.0)
    recorder.record(utc("2024-05-01T09:59:00"), 0.2, True, 10.0)
    report = recorder.report(3600, threshold=0.5, now=utc("2024-05-01T10:00:00"))
    assert report.totals.frames == 1 and report.totals.defects == 1


def test_long_windows_use_coarser_steps() -> None:
    assert series_step(3600) == 60
    assert series_step(4 * 3600) == 60
    assert series_step(8 * 3600) == 300
    assert series_step(24 * 3600) == 900
    assert series_step(7 * 86400) == 3600
    recorder = TrendRecorder(UTC_SHIFTS)
    for minute in range(15):
        recorder.record(utc("2024-05-01T10:00:00") + 60 * minute, 0.2, minute == 3, 10.0)
    report = recorder.report(7 * 86400, threshold=0.5, now=utc("2024-05-01T11:00:00"))
    slot = report.series.t.index(int(utc("2024-05-01T10:00:00")))
    assert report.series.frames[slot] == 15 and report.series.defects[slot] == 1
    assert len(report.series.t) <= 7 * 24 + 1


def test_log_bins_and_percentiles() -> None:
    assert log_bin(1.0, 20) == 0
    assert log_bin(10.0, 20) == 20
    assert log_bin(0.1, 20) == -20
    assert bin_edge(log_bin(3.7, 20), 20) <= 3.7 < bin_edge(log_bin(3.7, 20) + 1, 20)
    assert log_bin(float("nan"), 20) == log_bin(float("inf"), 20)  # a broken score still counts
    assert log_bin(-1.0, 20) == log_bin(0.0, 20)

    bucket = Bucket()
    for latency in [10.0] * 98 + [100.0, 100.0]:
        bucket.add(0.5, False, latency)
    p50 = histogram_quantile(bucket.latencies, 0.5, LATENCY_BINS_PER_DECADE)
    p99 = histogram_quantile(bucket.latencies, 0.99, LATENCY_BINS_PER_DECADE)
    assert p50 == pytest.approx(10.0, rel=0.06)
    assert p99 == pytest.approx(100.0, rel=0.06)
    assert histogram_quantile(Bucket().latencies, 0.5, LATENCY_BINS_PER_DECADE) is None


def test_score_histogram_counts_every_part_and_spans_the_threshold() -> None:
    recorder = TrendRecorder(UTC_SHIFTS)
    now = utc("2024-05-01T10:00:00")
    scores = [0.11, 0.12, 0.13, 0.2, 0.21, 0.9]
    for score in scores:
        recorder.record(now - 30, score, score > 0.5, 10.0)
    hist = recorder.report(3600, threshold=2.0, now=now).score_histogram
    assert sum(hist.counts) == len(scores)
    assert len(hist.edges) == len(hist.counts) + 1
    assert hist.edges == sorted(hist.edges)
    assert hist.edges[0] <= min(scores) and hist.edges[-1] > 2.0  # the threshold line falls inside
    for score in scores:  # each score sits in the bin whose edges hold it
        index = next(i for i in range(len(hist.counts)) if hist.edges[i] <= score < hist.edges[i + 1])
        assert hist.counts[index] > 0
    assert recorder.report(3600, threshold=2.0, now=now - 7200).score_histogram.counts == []


def test_shift_boundaries_follow_the_clock_of_the_plant() -> None:
    bounds = shift_boundaries(
        ["06:00", "14:00", "22:00"], ZoneInfo("UTC"), utc("2024-05-01T07:00:00"), utc("2024-05-01T23:00:00")
    )
    assert [b.strftime("%d %H:%M") for b in bounds] == ["01 06:00", "01 14:00", "01 22:00", "02 06:00"]
    # The night shift over the spring DST change in Berlin is an hour short.
    berlin = ZoneInfo("Europe/Berlin")
    night = shift_boundaries(
        ["06:00", "14:00", "22:00"],
        berlin,
        datetime(2024, 3, 30, 23, 0, tzinfo=berlin).timestamp(),
        datetime(2024, 3, 31, 5, 0, tzinfo=berlin).timestamp(),
    )
    assert len(night) == 2
    assert night[1].timestamp() - night[0].timestamp() == 7 * 3600


def test_per_shift_aggregates() -> None:
    recorder = TrendRecorder(UTC_SHIFTS)
    for _ in range(4):
        recorder.record(utc("2024-05-01T13:30:00"), 0.2, False, 10.0)  # early shift
    recorder.record(utc("2024-05-01T14:00:00"), 0.9, True, 40.0)  # late shift starts at 14:00 sharp
    recorder.record(utc("2024-05-01T15:10:00"), 0.2, False, 40.0)
    report = recorder.report(4 * 3600, threshold=0.5, now=utc("2024-05-01T16:00:00"))
    assert [s.label for s in report.shifts] == ["06:00-14:00", "14:00-22:00"]
    early, late = report.shifts
    assert (early.frames, early.defects, early.defect_rate) == (4, 0, 0.0)
    assert (late.frames, late.defects, late.defect_rate) == (2, 1, 0.5)
    assert late.latency_p50_ms == pytest.approx(40.0, rel=0.06)
    assert not early.complete and not late.complete  # cut by the window / still running
    assert early.start == "2024-05-01T06:00:00+00:00" and late.end == "2024-05-01T22:00:00+00:00"


def test_buckets_survive_a_restart_and_expire(tmp_path: Path) -> None:
    path = tmp_path / "trends.sqlite3"
    settings = TrendSettings(retention_days=1, timezone="UTC")
    now = datetime.now(timezone.utc).timestamp()
    first = TrendRecorder(settings, path)
    first.record(now - 120, 0.9, True, 20.0)
    first.record(now - 60, 0.2, False, 20.0)
    assert first.flush() == 2
    assert first.flush() == 0  # only changed buckets are written
    first.record(now, 0.2, False, 20.0)
    first.close()  # writes what is left

    second = TrendRecorder(settings, path)
    report = second.report(3600, threshold=0.5, now=now)
    assert report.totals.frames == 3 and report.totals.defects == 1
    second.record(now + 2 * 86400, 0.2, False, 20.0)  # two days on: the old minutes are past retention
    second.flush()
    second.close()
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM buckets").fetchone()[0]
    assert rows == 1


def test_a_corrupt_trends_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "trends.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    recorder = TrendRecorder(TrendSettings(), path)
    recorder.record(datetime.now(timezone.utc).timestamp(), 0.2, False, 5.0)
    assert recorder.flush() == 1
    recorder.close()
    assert len(list(tmp_path.glob("trends.sqlite3.corrupt-*"))) == 1


def test_the_window_must_fit_the_history_kept() -> None:
    recorder = TrendRecorder(TrendSettings(retention_days=2))
    with pytest.raises(ValueError, match="2 days kept"):
        recorder.report(3 * 86400, threshold=0.5)
    with pytest.raises(ValueError, match="between 1 minute"):
        recorder.report(30, threshold=0.5)


def test_bad_trend_settings_are_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="shift_starts"):
        TrendSettings(shift_starts=["6:00"])
    with pytest.raises(ValidationError, match="distinct"):
        TrendSettings(shift_starts=["06:00", "06:00"])
    with pytest.raises(ValidationError, match="unknown time zone"):
        TrendSettings(timezone="Mars/Olympus")
    assert TrendSettings(shift_starts=["22:00", "06:00"]).shift_starts == ["06:00", "22:00"]
