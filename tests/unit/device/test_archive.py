"""The image archive on its own: writing, the bounded queue, pruning by age and size, the index, export."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import ArchiveSettings
from device.station.alerts import ReviewState
from device.station.archive import (
    ArchivedImage,
    ArchiveItemNotFound,
    ArchiveRecord,
    ExportEntry,
    ImageArchive,
    UnreviewedPolicy,
    plan_mvtec_export,
)
from device.station.camera.base import Frame
from vision.data.mvtec import MvtecCategory
from vision.overlay import BOX_COLOR_BGR
from vision.types import Box, InspectionResult

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc).timestamp()
DAY = 86_400.0


def make_archive(
    tmp_path: Path, clock: Callable[[], float] | None = None, **settings: object
) -> ImageArchive:
    config = ArchiveSettings.model_validate({"path": str(tmp_path / "archive"), **settings})
    return ImageArchive(config, clock=clock or (lambda: T0))


def record(
    i: int,
    *,
    at: float | None = None,
    ng: bool = False,
    score: float | None = None,
    defect_class: str | None = None,
    alert_id: str | None = None,
    noisy: bool = False,
    mask: bool = False,
) -> ArchiveRecord:
    rng = np.random.default_rng(i)
    if noisy:  # incompressible, so a few parts reach the size bound
        image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    else:
        image = np.full((64, 64, 3), 90 + i % 100, np.uint8)
    heat = np.full(image.shape[:2], 0.2, np.float32)
    boxes: tuple[Box, ...] = ()
    if ng:
        heat[10:20, 10:40] = 3.0
        boxes = (Box(10, 10, 30, 10, 3.0),)
    true_mask = (heat > 1).astype(np.uint8) * 255 if mask else None
    return ArchiveRecord(
        captured_at=T0 + i if at is None else at,
        frame_id=i,
        image=image,
        verdict="NG" if ng else "OK",
        score=score if score is not None else (3.0 if ng else 0.2),
        threshold=1.0,
        defect_class=(defect_class or "linear") if ng else None,
        alert_id=alert_id,
        anomaly_map=heat,
        boxes=boxes,
        mask=true_mask,
    )


def files_on_disk(archive: ImageArchive) -> list[Path]:
    return sorted(p for p in archive.root.rglob("*.*") if p.parent != archive.root)


def test_a_part_is_written_raw_and_with_its_overlay_by_date(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    item = archive.store(record(7, ng=True, alert_id="a-7", mask=True))
    assert item.image_path.parent.name == "2026-03-01" and item.image_path.name.endswith("_f7_NG.jpg")
    raw = cv2.imdecode(np.frombuffer(archive.read_image(item.id), np.uint8), cv2.IMREAD_COLOR)
    overlay = cv2.imdecode(
        np.frombuffer(archive.read_image(item.id, overlay=True), np.uint8), cv2.IMREAD_COLOR
    )
    assert raw.shape == overlay.shape == (64, 64, 3)
    # The raw frame is untouched (a model learns from it); the overlay has the heatmap and the red box.
    assert np.abs(raw.astype(int) - 97).max() <= 3
    red = np.array(BOX_COLOR_BGR)
    assert np.abs(overlay[10, 20].astype(int) - red).max() < 60
    assert item.mask_path is not None and cv2.imread(str(item.mask_path), cv2.IMREAD_GRAYSCALE).max() == 255
    assert item.bytes == sum(p.stat().st_size for p in files_on_disk(archive))
    assert archive.find_by_alert("a-7") == item and archive.find_by_alert("nope") is None
    with pytest.raises(ArchiveItemNotFound):
        archive.read_image(item.id + 1)


def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    first = make_archive(tmp_path)
    items = [first.store(record(i, ng=i == 2)) for i in range(3)]
    first.close()
    second = make_archive(tmp_path)
    assert second.stats().items == 3 and second.stats().bytes_used == sum(i.bytes for i in items)
    assert second.query()[1] == list(reversed(items))


def test_prunes_by_age_oldest_first_and_counts_it(tmp_path: Path) -> None:
    now = [T0]
    archive = make_archive(tmp_path, clock=lambda: now[0], max_age_days=30)
    old = [archive.store(record(i, at=T0 - days * DAY)) for i, days in enumerate((40, 35, 10, 1))]
    assert archive.prune() == 2
    assert [i.id for i in archive.query()[1]] == [old[3].id, old[2].id]
    assert not old[0].image_path.exists() and not old[0].image_path.parent.exists()  # empty day removed
    now[0] += 25 * DAY
    assert archive.prune() == 1
    stats = archive.stats()
    assert (stats.items, stats.pruned_items) == (1, 3)
    assert stats.bytes_used == old[3].bytes == sum(p.stat().st_size for p in files_on_disk(archive))


def test_prunes_by_size_oldest_first(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, max_bytes=1_000_000)
    stored = [archive.store(record(i, noisy=True)) for i in range(40)]
    stats = archive.stats()
    assert stats.bytes_used <= 1_000_000 < sum(i.bytes for i in stored)
    kept = sorted(i.id for i in archive.query(limit=100)[1])
    assert kept == [i.id for i in stored[-len(kept) :]]  # the newest survive
    assert stats.pruned_items == 40 - len(kept) > 0
    assert stats.pruned_bytes == sum(i.bytes for i in stored) - stats.bytes_used
    assert stats.bytes_used == sum(p.stat().st_size for p in files_on_disk(archive))
    with pytest.raises(ArchiveItemNotFound):
        archive.read_image(stored[0].id)


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, queue_size=3)
    accepted: list[bool] = []
    # The writer is not running yet, so nothing drains the queue: a blocking put would never return.
    offering = threading.Thread(target=lambda: accepted.extend(archive.enqueue(record(i)) for i in range(10)))
    offering.start()
    offering.join(timeout=10)
    assert not offering.is_alive()
    assert accepted == [True] * 3 + [False] * 7
    assert (archive.stats().dropped, archive.stats().queue_depth) == (7, 3)
    archive.start()
    assert archive.wait_idle(30)
    assert (archive.stats().written, archive.stats().items) == (3, 3)
    archive.stop()
    assert not archive.enqueue(record(11))  # stopped: nothing is accepted


def test_submit_samples_ok_parts_and_keeps_ng_parts_with_their_class_and_true_mask(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, ok_sample_rate=0.0)
    image = np.full((64, 64, 3), 80, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[5:9, 5:60] = 255
    frame = Frame(3, T0, 0.0, image, truth={"mask": mask})
    heat = np.zeros((64, 64), np.float32)
    ok = InspectionResult(0.1, 1.0, False, [], heat, 5.0)
    ng = InspectionResult(2.0, 1.0, True, [Box(5, 5, 55, 4, 2.0)], heat, 5.0)
    assert not archive.submit(frame, ok)
    assert archive.submit(frame, ng, alert_id="a-3")
    archive.start()
    assert archive.wait_idle(30)
    archive.stop()
    reopened = make_archive(tmp_path)
    (item,) = reopened.query()[1]
    assert (item.verdict, item.alert_id, item.defect_class) == ("NG", "a-3", "linear")
    assert item.mask_path is not None


def test_a_failed_write_is_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    good = record(1)
    broken = ArchiveRecord(T0, 2, np.zeros((8, 8), np.uint8), "OK", 0.1, 1.0, anomaly_map=np.zeros((8, 8)))
    archive.enqueue(broken)  # grayscale: the overlay cannot be drawn
    archive.start()
    assert archive.wait_idle(30)
    assert archive.stats().write_errors == 1 and not archive.health().ok
    archive.enqueue(good)
    assert archive.wait_idle(30)
    archive.stop()
    assert archive.stats().written == 1 and archive.health().ok


def test_query_filters_and_pages_newest_first(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    archive.store(record(0, score=0.1))
    archive.store(record(1, ng=True, score=2.5, defect_class="spot", alert_id="a1"))
    archive.store(record(2, score=0.4))
    archive.store(record(3, ng=True, score=4.0, defect_class="linear", alert_id="a3"))

    def frames(**filters: object) -> list[int]:
        return [i.frame_id for i in archive.query(**filters)[1]]  # type: ignore[arg-type]

    assert frames() == [3, 2, 1, 0]
    assert frames(verdict="NG") == [3, 1] and frames(verdict="OK") == [2, 0]
    assert frames(min_score=0.4, max_score=2.5) == [2, 1]
    assert frames(defect_class="spot") == [1] and frames(alert_id="a3") == [3]
    since = datetime.fromtimestamp(T0 + 1, tz=timezone.utc)
    until = datetime.fromtimestamp(T0 + 2).astimezone(timezone.utc).replace(tzinfo=None)  # naive = UTC
    assert frames(since=since, until=until) == [2, 1]
    total, page = archive.query(limit=2, offset=1)
    assert total == 4 and [i.frame_id for i in page] == [2, 1]
    assert archive.query(verdict="NG", limit=1)[0] == 2
    with pytest.raises(ValueError, match="min_score"):
        archive.query(min_score=float("nan"))
    with pytest.raises(ArchiveItemNotFound, match="7, 9"):
        archive.get_many([1, 7, 9])
    assert [i.frame_id for i in archive.get_many([2, 1, 2])] == [1, 0]


def export(
    archive: ImageArchive,
    labels: dict[int, str] | None = None,
    category: str = "pcb",
    reviews: dict[str, ReviewState] | None = None,
    unreviewed: UnreviewedPolicy = "defect",
) -> zipfile.ZipFile:
    items = archive.query(limit=100)[1]
    planned = archive.export_mvtec(items, category, labels, reviews=reviews, unreviewed=unreviewed)
    return zipfile.ZipFile(io.BytesIO(b"".join(planned.chunks)))


def test_export_has_the_mvtec_layout_and_honours_labels(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    ok = [archive.store(record(i)) for i in range(3)]
    ng_masked = archive.store(record(3, ng=True, defect_class="spot", mask=True))
    ng_plain = archive.store(record(4, ng=True, defect_class="linear"))
    relabelled = archive.store(record(5, ng=True, defect_class="linear"))
    names = set(export(archive, labels={relabelled.id: "good"}).namelist())
    assert names == {
        *(f"pcb/train/good/{i.id:08d}.jpg" for i in [*ok, relabelled]),
        f"pcb/test/spot/{ng_masked.id:08d}.jpg",
        f"pcb/ground_truth/spot/{ng_masked.id:08d}_mask.png",
        f"pcb/test/linear/{ng_plain.id:08d}.jpg",  # no true mask: none is made up
        "manifest.json",
    }
    manifest = json.loads(export(archive).read("manifest.json"))
    assert manifest["category"] == "pcb" and len(manifest["images"]) == 6 and manifest["missing_ids"] == []
    with pytest.raises(ArchiveItemNotFound, match="99"):
        plan_mvtec_export(archive.query()[1], "pcb", {99: "good"})
    with pytest.raises(ValueError, match="category"):
        plan_mvtec_export(archive.query()[1], "../etc")
    with pytest.raises(ValueError, match="label"):
        plan_mvtec_export(archive.query()[1], "pcb", {ok[0].id: "a/b"})


def test_an_export_with_masks_loads_as_a_dataset_and_names_pruned_files(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    for i in range(3):
        archive.store(record(i))
    archive.store(record(3, ng=True, defect_class="spot", mask=True))
    gone = archive.store(record(4))
    gone.image_path.unlink()  # pruned while the export runs
    bundle = export(archive, category="line1")
    bundle.extractall(tmp_path / "out")
    dataset = MvtecCategory.load(tmp_path / "out", "line1")
    assert len(dataset.train_good) == 3 and dataset.defect_types == ["spot"]
    assert json.loads(bundle.read("manifest.json"))["missing_ids"] == [gone.id]


def reviewed_parts(archive: ImageArchive) -> dict[str, ArchivedImage]:
    """An OK part and NG parts (all with a true mask) whose alerts were confirmed, called a false alarm,
    left unreviewed, or whose alert is unknown to the review store (no alert id at all)."""
    parts = {"ok": archive.store(record(0))}
    for i, name in enumerate(("confirmed", "false_alarm", "unreviewed"), start=1):
        parts[name] = archive.store(record(i, ng=True, defect_class="spot", alert_id=f"a-{name}", mask=True))
    parts["no_alert"] = archive.store(record(4, ng=True, defect_class="linear", mask=True))
    return parts


REVIEWS: dict[str, ReviewState] = {"a-confirmed": "confirmed", "a-false_alarm": "false_alarm"}


def placed(entries: Sequence[ExportEntry]) -> dict[int, tuple[str, bool, str | None]]:
    """id -> (folder, has a mask, review) of a plan's entries."""
    return {e.item.id: (e.folder, e.mask_name is not None, e.review) for e in entries}


@pytest.mark.parametrize(
    ("policy", "unreviewed_goes_to"),
    [("defect", ("test/spot", True)), ("good", ("test/good", False)), ("skip", None)],
)
def test_the_plan_places_ng_parts_by_their_review(
    tmp_path: Path, policy: UnreviewedPolicy, unreviewed_goes_to: tuple[str, bool] | None
) -> None:
    archive = make_archive(tmp_path)
    parts = reviewed_parts(archive)
    plan = plan_mvtec_export(archive.query()[1], "pcb", reviews=REVIEWS, unreviewed=policy)
    expected = {
        parts["ok"].id: ("train/good", False, None),
        parts["confirmed"].id: ("test/spot", True, "confirmed"),
        parts["false_alarm"].id: ("test/good", False, "false_alarm"),  # a good part: no mask
    }
    if unreviewed_goes_to is not None:
        folder, mask = unreviewed_goes_to
        expected[parts["unreviewed"].id] = (folder, mask, "unreviewed")
        expected[parts["no_alert"].id] = (folder.replace("spot", "linear"), mask, "unreviewed")
    assert placed(plan.entries) == expected
    skipped = [parts["unreviewed"].id, parts["no_alert"].id] if unreviewed_goes_to is None else []
    assert list(plan.skipped_ids) == skipped
    assert sum(plan.counts().values()) == len(plan.entries) == len(expected)
    for entry in plan.entries:
        assert entry.image_name == f"pcb/{entry.folder}/{entry.item.id:08d}.jpg"
        assert entry.label == entry.folder.split("/")[1]


def test_the_default_plan_is_todays_and_labels_win_over_reviews(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    parts = reviewed_parts(archive)
    items = archive.query()[1]
    # No reviews, default policy: every NG part is a defect, as before reviews counted.
    assert {folder for folder, _, _ in placed(plan_mvtec_export(items, "pcb").entries).values()} == {
        "train/good",
        "test/spot",
        "test/linear",
    }
    labels = {
        parts["false_alarm"].id: "scratch",  # a false alarm the engineer calls a defect after all
        parts["confirmed"].id: "good",  # a confirmed defect the engineer calls good
        parts["unreviewed"].id: "dent",  # an unreviewed part a skip would leave out
    }
    plan = plan_mvtec_export(items, "pcb", labels, reviews=REVIEWS, unreviewed="skip")
    assert placed(plan.entries) == {
        parts["ok"].id: ("train/good", False, None),
        parts["confirmed"].id: ("train/good", False, "confirmed"),
        parts["false_alarm"].id: ("test/scratch", True, "false_alarm"),
        parts["unreviewed"].id: ("test/dent", True, "unreviewed"),
    }
    assert plan.skipped_ids == (parts["no_alert"].id,)
    assert plan.counts() == {"test/dent": 1, "test/scratch": 1, "train/good": 2}
    with pytest.raises(ValueError, match="unreviewed must be one of"):
        plan_mvtec_export(items, "pcb", unreviewed="maybe")  # type: ignore[arg-type]


def test_the_manifest_carries_reviews_and_counts_per_folder(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    parts = reviewed_parts(archive)
    parts["ok"].image_path.unlink()  # pruned while the export runs: not counted
    bundle = export(archive, reviews=REVIEWS, unreviewed="skip")
    manifest = json.loads(bundle.read("manifest.json"))
    rows = {row["id"]: row for row in manifest["images"]}
    assert {i: (r["folder"], r["review"], r["label"]) for i, r in rows.items()} == {
        parts["confirmed"].id: ("test/spot", "confirmed", "spot"),
        parts["false_alarm"].id: ("test/good", "false_alarm", "good"),
    }
    assert rows[parts["false_alarm"].id]["mask"] is None and rows[parts["confirmed"].id]["mask"]
    assert manifest["counts"] == {"test/good": 1, "test/spot": 1}
    assert manifest["missing_ids"] == [parts["ok"].id]
    assert manifest["skipped_unreviewed_ids"] == [parts["unreviewed"].id, parts["no_alert"].id]
    assert set(bundle.namelist()) == {
        f"pcb/test/spot/{parts['confirmed'].id:08d}.jpg",
        f"pcb/ground_truth/spot/{parts['confirmed'].id:08d}_mask.png",
        f"pcb/test/good/{parts['false_alarm'].id:08d}.jpg",
        "manifest.json",
    }
