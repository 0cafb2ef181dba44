"""The archive endpoints on the FakeRuntime's real ImageArchive: filters, images, roles, export, audit."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime

JPEG_MAGIC = b"\xff\xd8\xff"


def test_archive_is_paged_and_filtered(client: TestClient, runtime: FakeRuntime) -> None:
    alerts = [a for a in (runtime.advance() for _ in range(8)) if a]
    page = client.get("/archive?limit=3", headers=headers("viewer")).json()
    assert page["total"] == 8 and [i["frame_id"] for i in page["items"]] == [8, 7, 6]
    ng = client.get("/archive", params={"verdict": "NG"}, headers=headers("viewer")).json()
    assert [i["alert_id"] for i in ng["items"]] == [alerts[1]["alert_id"], alerts[0]["alert_id"]]
    assert all(i["defect_class"] == "linear" and i["has_mask"] for i in ng["items"])
    scored = client.get("/archive?min_score=0.5&max_score=1", headers=headers("viewer")).json()
    assert scored["total"] == 2
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert client.get("/archive", params={"since": future}, headers=headers("viewer")).json()["total"] == 0
    by_alert = client.get("/archive", params={"alert_id": alerts[0]["alert_id"]}, headers=headers("viewer"))
    assert [i["frame_id"] for i in by_alert.json()["items"]] == [4]


def test_bad_filters_are_422_with_the_field(client: TestClient) -> None:
    for query, field in [
        ("verdict=maybe", "verdict"),
        ("since=yesterday", "since"),
        ("min_score=nan", "min_score"),
        ("limit=0", "limit"),
        ("defect_class=../x", "defect_class"),
    ]:
        response = client.get(f"/archive?{query}", headers=headers("viewer"))
        assert response.status_code == 422, query
        assert ("query", field) in {tuple(d["loc"]) for d in response.json()["detail"]}


def test_images_overlay_and_download(client: TestClient, runtime: FakeRuntime) -> None:
    for _ in range(4):
        runtime.advance()
    item = client.get("/archive?verdict=NG", headers=headers("viewer")).json()["items"][0]
    raw = client.get(item["image_url"], headers=headers("viewer"))
    overlay = client.get(item["overlay_url"], headers=headers("viewer"))
    assert raw.headers["content-type"] == overlay.headers["content-type"] == "image/jpeg"
    assert raw.content.startswith(JPEG_MAGIC) and overlay.content != raw.content
    download = client.get(item["download_url"], headers=headers("viewer"))
    assert download.content == raw.content
    assert download.headers["content-disposition"].startswith('attachment; filename="')
    assert download.headers["content-disposition"].endswith(f'_f{item["frame_id"]}_NG.jpg"')
    assert client.get("/archive/999/image.jpg", headers=headers("viewer")).status_code == 404
    assert client.get("/archive/999/download", headers=headers("viewer")).status_code == 404
    assert client.get("/archive/1/image.jpg").status_code == 401
    stats = client.get("/archive/stats", headers=headers("viewer")).json()
    assert stats["items"] == 4 and stats["bytes_used"] > 0 and stats["dropped"] == 0


def test_export_is_an_audited_mvtec_zip_for_operators_only(client: TestClient, runtime: FakeRuntime) -> None:
    for _ in range(8):
        runtime.advance()
    assert client.post("/archive/export", json={}, headers=headers("viewer")).status_code == 403
    body = {"filters": {"verdict": "NG"}, "category": "bracket", "labels": [{"id": 8, "label": "good"}]}
    response = client.post("/archive/export", json=body, headers=headers("operator"))
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="bracket-mvtec-')
    names = set(zipfile.ZipFile(io.BytesIO(response.content)).namelist())
    assert names == {
        "bracket/test/linear/00000004.jpg",
        "bracket/ground_truth/linear/00000004_mask.png",
        "bracket/train/good/00000008.jpg",
        "manifest.json",
    }
    by_ids = client.post("/archive/export", json={"ids": [1, 2]}, headers=headers("operator"))
    assert set(zipfile.ZipFile(io.BytesIO(by_ids.content)).namelist()) == {
        "pcb/train/good/00000001.jpg",  # default category: camera.category
        "pcb/train/good/00000002.jpg",
        "manifest.json",
    }
    audit = client.get("/audit", headers=headers("admin")).json()["items"]
    assert [(a["action"], a["actor"], a["ok"]) for a in audit[:2]] == [
        ("archive_export", "operator", True)
    ] * 2
    assert audit[1]["new_value"]["items"] == 2 and audit[1]["new_value"]["filters"] == {"verdict": "NG"}


def test_bad_or_empty_exports_are_refused_with_a_reason(client: TestClient, runtime: FakeRuntime) -> None:
    for _ in range(4):
        runtime.advance()
    operator = headers("operator")
    both = client.post("/archive/export", json={"ids": [1], "filters": {}}, headers=operator)
    assert both.status_code == 422
    assert client.post("/archive/export", json={"ids": []}, headers=operator).status_code == 422
    bad_label = {"ids": [1], "labels": [{"id": 1, "label": "a b"}]}
    assert client.post("/archive/export", json=bad_label, headers=operator).status_code == 422
    unknown = client.post("/archive/export", json={"ids": [1, 77]}, headers=operator)
    assert unknown.status_code == 404 and "77" in unknown.json()["detail"]
    stranger = client.post(
        "/archive/export", json={"ids": [1], "labels": [{"id": 2, "label": "good"}]}, headers=operator
    )
    assert stranger.status_code == 404 and "2" in stranger.json()["detail"]
    empty = client.post("/archive/export", json={"filters": {"min_score": 5}}, headers=operator)
    assert empty.status_code == 404 and "no archived images" in empty.json()["detail"]
    audit = client.get("/audit", headers=headers("admin")).json()["items"]
    assert [a["ok"] for a in audit] == [False, False, False]  # refusals are audited; 422s never ran


def test_export_places_ng_parts_by_review_and_audits_what_it_wrote(
    client: TestClient, runtime: FakeRuntime
) -> None:
    alerts = [a for a in (runtime.advance() for _ in range(12)) if a]  # NG: frames (ids) 4, 8 and 12
    false_alarm, confirmed, _unreviewed = (a["alert_id"] for a in alerts)
    operator = headers("operator")
    for alert_id, state in ((false_alarm, "false_alarm"), (confirmed, "confirmed")):
        review = client.post(f"/alerts/{alert_id}/review", json={"state": state}, headers=operator)
        assert review.status_code == 200
    bad = client.post("/archive/export", json={"filters": {}, "unreviewed": "maybe"}, headers=operator)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "unreviewed"

    response = client.post(
        "/archive/export", json={"filters": {"verdict": "NG"}, "unreviewed": "skip"}, headers=operator
    )
    assert response.status_code == 200
    bundle = zipfile.ZipFile(io.BytesIO(response.content))
    assert set(bundle.namelist()) == {
        "pcb/test/good/00000004.jpg",  # the false alarm: a good part, no mask
        "pcb/test/linear/00000008.jpg",
        "pcb/ground_truth/linear/00000008_mask.png",
        "manifest.json",  # frame 12, unreviewed, is skipped
    }
    summary = {"items": 2, "destinations": {"test/good": 1, "test/linear": 1}, "skipped_unreviewed": 1}
    assert json.loads(response.headers["x-export-summary"]) == summary
    manifest = json.loads(bundle.read("manifest.json"))
    assert [(r["id"], r["review"]) for r in manifest["images"]] == [(4, "false_alarm"), (8, "confirmed")]
    assert manifest["counts"] == summary["destinations"] and manifest["skipped_unreviewed_ids"] == [12]
    entry = client.get("/audit", headers=headers("admin")).json()["items"][0]
    assert entry["action"] == "archive_export" and entry["ok"]
    asked = {"category": "pcb", "labels": 0, "unreviewed": "skip", "filters": {"verdict": "NG"}}
    assert entry["new_value"] == {**asked, **summary}
    assert entry["message"] == "2 images (test/good 1, test/linear 1); 1 unreviewed NG skipped"

    # Default `defect`: the unreviewed part is a defect as before; a label still wins over a review.
    body = {"ids": [4, 8, 12, 1], "labels": [{"id": 8, "label": "good"}]}
    response = client.post("/archive/export", json=body, headers=operator)
    assert set(zipfile.ZipFile(io.BytesIO(response.content)).namelist()) == {
        "pcb/train/good/00000001.jpg",
        "pcb/test/good/00000004.jpg",
        "pcb/train/good/00000008.jpg",
        "pcb/test/linear/00000012.jpg",
        "pcb/ground_truth/linear/00000012_mask.png",
        "manifest.json",
    }
    assert json.loads(response.headers["x-export-summary"])["items"] == 4

    nothing = client.post("/archive/export", json={"ids": [12], "unreviewed": "skip"}, headers=operator)
    assert nothing.status_code == 404 and "unreviewed" in nothing.json()["detail"]
    assert client.get("/audit", headers=headers("admin")).json()["items"][0]["ok"] is False
