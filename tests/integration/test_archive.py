"""The image archive through the real runtime (simulated camera, ONNX model, broker) and real HTTP."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from conftest import TEST_CATEGORY
from fixtures_mqtt import wait_until
from unit.app.api_helpers import KEYS, headers
from unit.app.uvicorn_thread import serve

from app.api.main import create_app
from app.api.security import KeyStore
from app.settings import load_settings
from device.station.commands import StopLine
from device.station.runtime import EdgeRuntime
from vision.data.mvtec import MvtecCategory

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def live(tmp_path: Path, trained_model: Path, mosquitto: Any) -> Iterator[tuple[httpx.Client, EdgeRuntime]]:
    settings = load_settings(
        None,
        {
            "data_dir": str(tmp_path / "data"),
            "camera": {"category": TEST_CATEGORY, "fps": 12, "defect_rate": 0.4, "queue_size": 64},
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-archive"},
            "archive": {"ok_sample_rate": 1.0},
        },
    )
    runtime = EdgeRuntime(settings)
    runtime.start()
    try:
        archive = runtime.archive
        wait_until(
            lambda: archive.query(verdict="NG")[0] >= 3 and archive.query(verdict="OK")[0] >= 3, 90, "parts"
        )
        # A still archive from here on, so the filters below compare like with like.
        assert runtime.execute(StopLine(), actor="test").ok

        def settled() -> bool:
            stats = archive.stats()
            return stats.enqueued == stats.written + stats.dropped + stats.write_errors

        wait_until(settled, 30, "the archive writer to catch up")
        with (
            serve(create_app(runtime, settings, KeyStore.from_keys(KEYS))) as base_url,
            httpx.Client(base_url=base_url, timeout=30) as client,
        ):
            yield client, runtime
    finally:
        runtime.stop()


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_ng_parts_are_archived_with_their_alert_and_overlay(live: tuple[httpx.Client, EdgeRuntime]) -> None:
    client, runtime = live
    viewer = headers("viewer")
    page = client.get("/archive", params={"verdict": "NG", "limit": 500}, headers=viewer).json()
    alerts = {a["alert_id"]: a for a in runtime.alert_store.query(limit=500)[1]}
    assert page["total"] >= 3 and all(i["verdict"] == "NG" for i in page["items"])
    for item in page["items"]:
        alert = alerts[item["alert_id"]]  # every archived NG part is an alert, and named alike
        assert (item["frame_id"], item["defect_class"], item["ts"]) == (
            alert["frame_id"],
            alert["defect_class"],
            alert["ts"],
        )
        assert item["score"] > item["threshold"] and item["has_mask"]  # the simulator knows the truth
    item = page["items"][0]
    assert runtime.archive.find_by_alert(item["alert_id"]).id == item["id"]  # type: ignore[union-attr]
    raw = decode(client.get(item["image_url"], headers=viewer).content)
    overlay = decode(client.get(item["overlay_url"], headers=viewer).content)
    assert raw.shape == overlay.shape == (256, 256, 3)
    assert np.abs(raw.astype(int) - overlay.astype(int)).mean() > 1.0  # the heatmap is drawn in

    threshold = item["threshold"]
    high = client.get("/archive", params={"min_score": threshold, "limit": 500}, headers=viewer).json()
    assert high["total"] == page["total"] and all(i["score"] >= threshold for i in high["items"])
    ok = client.get("/archive", params={"verdict": "OK", "max_score": threshold}, headers=viewer).json()
    assert ok["total"] >= 3 and all(i["alert_id"] is None and i["defect_class"] is None for i in ok["items"])
    for bad in ({"verdict": "bad"}, {"since": "yesterday"}, {"min_score": "inf"}, {"offset": -1}):
        assert client.get("/archive", params=bad, headers=viewer).status_code == 422, bad

    metrics = client.get("/metrics", headers=viewer).text
    assert "edgeinspect_archive_bytes" in metrics and "edgeinspect_archive_dropped" in metrics
    assert client.get("/health").json()["components"]["archive"]["ok"] is True


def test_export_is_a_mvtec_dataset_for_operators(
    live: tuple[httpx.Client, EdgeRuntime], tmp_path: Path
) -> None:
    client, runtime = live
    assert client.post("/archive/export", json={}, headers=headers("viewer")).status_code == 403
    response = client.post(
        "/archive/export", json={"category": "line1", "filters": {"limit": 40}}, headers=headers("operator")
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    bundle = zipfile.ZipFile(io.BytesIO(response.content))
    names = bundle.namelist()
    assert any(n.startswith("line1/train/good/") for n in names)
    assert any(n.startswith("line1/test/") for n in names)
    assert any(n.startswith("line1/ground_truth/") and n.endswith("_mask.png") for n in names)
    bundle.extractall(tmp_path / "export")
    dataset = MvtecCategory.load(tmp_path / "export", "line1")  # the project's own reader takes it as it is
    assert dataset.train_good and dataset.defect_types
    assert len(dataset.train_good) + len(dataset.test) == len(names) - 1 - len(
        [n for n in names if "/ground_truth/" in n]
    )
    entry = client.get("/audit", headers=headers("admin")).json()["items"][0]
    assert (entry["action"], entry["actor"], entry["ok"]) == ("archive_export", "operator", True)
    assert runtime.archive.stats().write_errors == 0


def test_export_honours_operator_reviews(live: tuple[httpx.Client, EdgeRuntime]) -> None:
    client, _ = live
    operator = headers("operator")
    ng = client.get("/archive", params={"verdict": "NG", "limit": 500}, headers=operator).json()["items"]
    assert len(ng) >= 3
    false_alarm, confirmed, unreviewed = ng[0], ng[1], ng[2]
    for item, state in ((false_alarm, "false_alarm"), (confirmed, "confirmed")):
        review = client.post(
            f"/alerts/{item['alert_id']}/review",
            json={"state": state, "comment": "export test"},
            headers=operator,
        )
        assert review.status_code == 200, review.text

    response = client.post(
        "/archive/export",
        json={"category": "line1", "filters": {"verdict": "NG", "limit": 500}, "unreviewed": "skip"},
        headers=operator,
    )
    assert response.status_code == 200, response.text
    bundle = zipfile.ZipFile(io.BytesIO(response.content))
    images = sorted(n for n in bundle.namelist() if n.endswith(".jpg"))
    cls = confirmed["defect_class"]
    assert images == sorted(
        [f"line1/test/good/{false_alarm['id']:08d}.jpg", f"line1/test/{cls}/{confirmed['id']:08d}.jpg"]
    )  # every other NG part is unreviewed, and skipped
    assert f"line1/ground_truth/{cls}/{confirmed['id']:08d}_mask.png" in bundle.namelist()
    assert not any(n.startswith("line1/ground_truth/good/") for n in bundle.namelist())
    manifest = json.loads(bundle.read("manifest.json"))
    assert {row["id"]: row["review"] for row in manifest["images"]} == {
        false_alarm["id"]: "false_alarm",
        confirmed["id"]: "confirmed",
    }
    assert unreviewed["id"] in manifest["skipped_unreviewed_ids"]
    assert len(manifest["skipped_unreviewed_ids"]) == len(ng) - 2
    counts = {"test/good": 1, f"test/{cls}": 1}
    assert manifest["counts"] == counts
    summary = json.loads(response.headers["X-Export-Summary"])
    assert summary == {"items": 2, "destinations": counts, "skipped_unreviewed": len(ng) - 2}
    entry = client.get("/audit", headers=headers("admin")).json()["items"][0]
    assert (entry["action"], entry["ok"], entry["new_value"]["items"]) == ("archive_export", True, 2)
    assert entry["new_value"]["destinations"] == counts

    # The default keeps today's behaviour: an unreviewed NG part is a defect with its mask.
    by_ids = client.post("/archive/export", json={"ids": [unreviewed["id"]]}, headers=operator)
    names = zipfile.ZipFile(io.BytesIO(by_ids.content)).namelist()
    cls, stem = unreviewed["defect_class"], f"{unreviewed['id']:08d}"
    assert f"{TEST_CATEGORY}/test/{cls}/{stem}.jpg" in names
    assert f"{TEST_CATEGORY}/ground_truth/{cls}/{stem}_mask.png" in names
