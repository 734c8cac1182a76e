"""GET /kpis: features by state and edits per micro-grid or area, checked against SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Database, login


def test_kpis_per_grid_add_up_and_follow_an_edit(client: TestClient,
                                                sample_db: Database) -> None:
    auth = login(client, "commander")
    body = client.get("/kpis", headers=auth)
    assert body.status_code == 200, body.text
    kpis = body.json()
    with sample_db.app.connect() as conn:
        grids = conn.execute(text("SELECT count(*) FROM twin.features "
                                  "WHERE layer = 'micro_grids'")).scalar_one()
        blocked = conn.execute(text(
            "SELECT count(*) FROM twin.features WHERE layer = 'fire_passages' "
            "AND props->>'state' = 'blocked'")).scalar_one()
        point, grid = conn.execute(text(
            "SELECT id, grid_code FROM twin.features WHERE layer = 'waste_points' "
            "ORDER BY id LIMIT 1")).one()
    assert len(kpis["groups"]) == grids
    assert sum(g["states"].get("fire_passages", {}).get("blocked", 0)
               for g in kpis["groups"]) == blocked > 0
    assert kpis["layers"]["fire_passages"]["states"]["blocked"] == "堵塞 blocked"
    before = next(g for g in kpis["groups"] if g["code"] == grid)

    # the grid's worker edits a point: the grid's edits today and workers active follow
    worker = login(client, f"worker-{grid}")
    item = client.get(f"/collections/waste_points/items/{point}", headers=worker)
    edited = client.patch(f"/collections/waste_points/items/{point}",
                          headers={**worker, "If-Match": item.headers["ETag"]},
                          json={"type": "Feature", "properties": {"state": "full"},
                                "reason": "满溢 full"})
    assert edited.status_code == 200, edited.text
    after = next(g for g in client.get("/kpis", headers=auth).json()["groups"]
                 if g["code"] == grid)
    assert after["edits_today"] == before["edits_today"] + 1
    assert after["workers_7_days"] == before["workers_7_days"] + 1
    assert after["states"]["waste_points"].get("full", 0) == (
        before["states"]["waste_points"].get("full", 0) + 1)
    # a tablet's edit that waited ten minutes offline shows in the sync health
    health = client.get("/kpis", headers=auth).json()["sync"]
    waited = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    synced = client.post("/sync", headers=worker, json={"edits": [{
        "edit_id": str(uuid.uuid4()), "device_id": "tablet-kpi", "device_seq": 1,
        "layer": "waste_points", "op": "update", "feature_id": point, "base_version": 2,
        "device_time": waited, "reason": "巡查 patrol",
        "changes": {"state": {"new": "ok"}}}]})
    assert synced.status_code == 200, synced.text
    now = client.get("/kpis", headers=auth).json()["sync"]
    assert now["devices"] == health["devices"] + 1 and now["edits"] == health["edits"] + 1
    assert now["longest_offline_s"] >= 600 and now["last_sync"] is not None
    assert now["devices_unsynced"] == health["devices_unsynced"]
    _tablets_report_what_waits_on_them(client, auth, worker, grid, point, sample_db)
    # a worker sees their own micro-grid; areas by committee; bad parameters named
    mine = client.get("/kpis", headers=worker).json()["groups"]
    assert [g["code"] for g in mine] == [grid]
    areas = client.get("/kpis?by=area", headers=auth).json()["groups"]
    assert all(g["name"] for g in areas) and len(areas) > 1
    for query, field in (("by=street", "by"), ("when=today", "when")):
        refused = client.get(f"/kpis?{query}", headers=auth)
        assert refused.status_code == 400, refused.text
        assert refused.json()["problems"][0]["field"] == field


def _tablets_report_what_waits_on_them(client: TestClient, auth: dict[str, str],
                                       worker: dict[str, str], grid: str, point: int,
                                       sample_db: Database) -> None:
    """A batch's outbox report shows on the board until a newer one says nothing waits; a
    late older report changes nothing; a malformed one refuses the batch unapplied."""
    def health() -> tuple[dict[str, Any], dict[str, Any]]:
        kpis = client.get("/kpis", headers=auth).json()
        return kpis["sync"], next(g for g in kpis["groups"] if g["code"] == grid)

    def report(sent: datetime, waiting: int, oldest: str | None = None,
               edits: list[dict[str, Any]] | None = None) -> Any:
        return client.post("/sync", headers=worker, json={"edits": edits or [], "outbox": {
            "device_id": "tablet-outbox", "waiting": waiting, "oldest_device_time": oldest,
            "sent_at": sent.isoformat()}})

    before, group_before = health()
    now = datetime.now(UTC)
    oldest = (now - timedelta(hours=3)).replace(microsecond=0)
    assert report(now, 3, oldest.isoformat()).status_code == 200
    waiting, group = health()
    assert waiting["devices_unsynced"] == before["devices_unsynced"] + 1
    assert waiting["edits_unsynced"] == before["edits_unsynced"] + 3
    assert datetime.fromisoformat(waiting["oldest_unsynced"]) <= oldest
    assert group["edits_unsynced"] == group_before["edits_unsynced"] + 3
    # the worker sees their own grid's tablets too
    mine = client.get("/kpis", headers=worker).json()["sync"]
    assert mine["devices_unsynced"] >= 1

    # a retry of an older request arriving late does not undo the newer report
    assert report(now - timedelta(minutes=1), 7, oldest.isoformat()).status_code == 200
    assert health()[0]["edits_unsynced"] == waiting["edits_unsynced"]

    # malformed reports: the whole batch refused, its edit not applied, the report kept
    with sample_db.app.connect() as conn:
        version = conn.execute(text("SELECT version FROM twin.features WHERE id = :p"),
                               {"p": point}).scalar_one()
    edit = {"edit_id": str(uuid.uuid4()), "device_id": "tablet-outbox", "layer": "waste_points",
            "op": "update", "feature_id": point, "base_version": version,
            "changes": {"state": {"new": "full"}}}
    for waiting_n, when, field in ((-1, None, "outbox.waiting"),
                                   (2, None, "outbox"),
                                   (0, oldest.isoformat(), "outbox")):
        refused = report(now + timedelta(minutes=5), waiting_n, when, [edit])
        assert refused.status_code == 422, refused.text
        assert refused.json()["problems"][0]["field"] == field
    unknown = client.post("/sync", headers=worker, json={"edits": [edit], "outbx": {}})
    assert unknown.status_code == 422 and unknown.json()["problems"][0]["field"] == "outbx"
    with sample_db.app.connect() as conn:
        assert conn.execute(text("SELECT version FROM twin.features WHERE id = :p"),
                            {"p": point}).scalar_one() == version
    assert health()[0]["edits_unsynced"] == waiting["edits_unsynced"]

    # the device's last batch goes through: nothing waits on it any more
    assert report(now + timedelta(minutes=6), 0).status_code == 200
    cleared, group = health()
    assert cleared["devices_unsynced"] == before["devices_unsynced"]
    assert group["edits_unsynced"] == group_before["edits_unsynced"]
