"""Offline sync: a tablet's outbox merged field by field, retries answered once, conflicts
held and settled, refusals kept, and the scope a tablet downloads."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Database, login


def _props(db: Database, fid: int) -> dict[str, Any]:
    return dict(db.one("SELECT props FROM twin.features WHERE id = :id", id=fid)[0])


@pytest.fixture
def spot(sample_db: Database) -> dict[str, Any]:
    """Two waste points of one micro-grid and its worker."""
    grid = sample_db.one("SELECT grid_code FROM twin.features WHERE layer = 'waste_points' "
                "GROUP BY grid_code HAVING count(*) >= 2 ORDER BY grid_code LIMIT 1")[0]
    rows = sample_db.one("SELECT array_agg(id ORDER BY id), array_agg(version ORDER BY id) "
                "FROM twin.features WHERE layer = 'waste_points' AND grid_code = :g", g=grid)
    return {"grid": grid, "ids": rows[0], "versions": rows[1], "worker": f"worker-{grid}"}


def _edit(fid: int | None, base: int | None, op: str = "update", old: dict[str, Any] | None = None,
          **changes: Any) -> dict[str, Any]:
    """A sync edit; ``old`` holds the values the device saw where the test says so."""
    seen = old or {}
    edit = {"edit_id": str(uuid.uuid4()), "device_id": "tablet-1", "device_seq": 1,
            "layer": "waste_points", "op": op, "reason": "巡查 patrol",
            "device_time": "2026-11-26T09:00:00+08:00",
            "changes": {k: {"new": v} | ({"old": seen[k]} if k in seen else {})
                        for k, v in changes.items()}}
    if fid is not None:
        edit |= {"feature_id": fid, "base_version": base}
    return edit


def _sync(client: TestClient, auth: dict[str, str], *edits: dict[str, Any]
          ) -> list[dict[str, Any]]:
    answer = client.post("/sync", headers=auth, json={"edits": list(edits)})
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    assert [r["edit_id"] for r in results] == [e.get("edit_id") for e in edits]
    return results


def _server_edit(client: TestClient, fid: int, version: int, **props: Any) -> None:
    """Someone else changes the feature through the API meanwhile."""
    answer = client.patch(f"/collections/waste_points/items/{fid}", headers={
        **login(client, "admin"), "If-Match": f'"{fid}-{version}"'},
        json={"type": "Feature", "properties": props})
    assert answer.status_code == 200, answer.text
    assert answer.headers["ETag"] == f'"{fid}-{version + 1}"'  # it did change something


def test_applied_then_duplicate(client: TestClient, sample_db: Database,
                                spot: dict[str, Any]) -> None:
    auth = login(client, spot["worker"])
    fid, version = spot["ids"][0], spot["versions"][0]
    edit = _edit(fid, version, state="full")
    (first,) = _sync(client, auth, edit)
    assert first["status"] == "applied" and first["version"] == version + 1
    assert first["feature"]["properties"]["state"] == "full"
    (again,) = _sync(client, auth, edit)  # the response was lost; the tablet sends it again
    assert again["status"] == "duplicate" and again["version"] == version + 1
    assert again["feature"] == first["feature"]
    n = sample_db.one("SELECT count(*) FROM twin.changes WHERE edit_id = :e",
             e=edit["edit_id"])[0]
    assert n == 1


def test_disjoint_fields_merge(client: TestClient, sample_db: Database,
                               spot: dict[str, Any]) -> None:
    fid, version = spot["ids"][0], spot["versions"][0]
    bins = _props(sample_db, fid)["bins"] % 50 + 1
    _server_edit(client, fid, version, bins=bins)
    (result,) = _sync(client, login(client, spot["worker"]), _edit(fid, version, state="full"))
    assert result["status"] == "merged" and result["version"] == version + 2
    assert _props(sample_db, fid) | {"bins": bins, "state": "full"} == _props(sample_db, fid)


def test_same_field_same_value_merges(client: TestClient, sample_db: Database,
                                      spot: dict[str, Any]) -> None:
    fid, version = spot["ids"][0], spot["versions"][0]
    _server_edit(client, fid, version, state="full")
    (result,) = _sync(client, login(client, spot["worker"]), _edit(fid, version, state="full"))
    assert result["status"] == "merged" and result["version"] == version + 1


def test_same_field_different_value_is_a_conflict_then_resolved(
        client: TestClient, sample_db: Database, spot: dict[str, Any]) -> None:
    fid, version = spot["ids"][0], spot["versions"][0]
    _server_edit(client, fid, version, state="damaged")
    auth = login(client, spot["worker"])
    (result,) = _sync(client, auth, _edit(fid, version, state="full", bins=5))
    assert result["status"] == "conflict" and result["version"] == version + 1
    assert _props(sample_db, fid)["state"] == "damaged"  # nothing applied, not even bins
    assert _props(sample_db, fid)["bins"] != 5
    (held,) = client.get("/conflicts", headers=auth).json()["conflicts"]
    assert held["id"] == result["conflict"]
    assert held["fields"]["state"]["mine"] == "full"
    assert held["fields"]["state"]["server"] == "damaged"
    assert [c["id"] for c in client.get("/conflicts", headers=login(client, "admin"))
            .json()["conflicts"]] == [held["id"]]
    settled = client.post(f"/conflicts/{held['id']}/resolve", headers=auth,
                          json={"choose": "mine", "reason": "现场核实 checked on site"})
    assert settled.status_code == 200, settled.text
    assert settled.json()["feature"]["properties"]["state"] == "full"
    assert sample_db.one("SELECT reason FROM twin.changes WHERE feature_id = :id "
                "ORDER BY id DESC LIMIT 1", id=fid)[0].startswith("resolution of conflict")
    assert client.get("/conflicts", headers=auth).json()["conflicts"] == []
    twice = client.post(f"/conflicts/{held['id']}/resolve", headers=auth,
                        json={"choose": "server"})
    assert twice.status_code == 409


def test_resolve_with_new_values_or_by_keeping_the_server(
        client: TestClient, sample_db: Database, spot: dict[str, Any]) -> None:
    auth = login(client, spot["worker"])
    ids = []
    for fid, version in zip(spot["ids"][:2], spot["versions"][:2], strict=True):
        _server_edit(client, fid, version, state="damaged")
        (result,) = _sync(client, auth, _edit(fid, version, state="full"))
        ids.append(result["conflict"])
    kept = client.post(f"/conflicts/{ids[0]}/resolve", headers=auth, json={"choose": "server"})
    assert kept.json()["feature"]["properties"]["state"] == "damaged"
    chosen = client.post(f"/conflicts/{ids[1]}/resolve", headers=auth,
                         json={"values": {"state": "closed"}})
    assert chosen.json()["feature"]["properties"]["state"] == "closed"
    bad = client.post(f"/conflicts/{ids[1]}/resolve", headers=auth, json={})
    assert bad.status_code == 422
    assert client.post("/conflicts/999999/resolve", headers=auth,
                       json={"choose": "server"}).status_code == 404


def test_a_rebased_edit_still_conflicts_with_a_change_it_never_saw(
        client: TestClient, sample_db: Database, spot: dict[str, Any]) -> None:
    """A tablet moved its outbox onto the version a merged answer gave, which holds another
    user's change it never showed: its old value still says what it saw (found by the soak
    test: this overwrote the other change silently)."""
    fid, version = spot["ids"][0], spot["versions"][0]
    seen = _props(sample_db, fid)
    _server_edit(client, fid, version, state="damaged")
    auth = login(client, spot["worker"])
    bins = seen["bins"] % 50 + 1
    (first,) = _sync(client, auth, _edit(fid, version, old={"bins": seen["bins"]}, bins=bins))
    assert first["status"] == "merged"
    (rebased,) = _sync(client, auth, _edit(fid, first["version"],
                                           old={"state": seen["state"]}, state="full"))
    assert rebased["status"] == "conflict"
    assert _props(sample_db, fid)["state"] == "damaged"


def test_my_own_earlier_edits_are_no_conflict(client: TestClient, sample_db: Database,
                                              spot: dict[str, Any]) -> None:
    """Two edits made offline on the same version: the second saw the first's value."""
    fid, version = spot["ids"][0], spot["versions"][0]
    seen = _props(sample_db, fid)
    auth = login(client, spot["worker"])
    (one, two) = _sync(client, auth, _edit(fid, version, old={"state": seen["state"]},
                                           state="full"),
                       _edit(fid, version, old={"state": "full"}, state="ok"))
    assert (one["status"], two["status"]) == ("applied", "merged")
    assert _props(sample_db, fid)["state"] == "ok"


def test_delete_against_an_update_conflicts(client: TestClient, sample_db: Database,
                                            spot: dict[str, Any]) -> None:
    fid, version = spot["ids"][0], spot["versions"][0]
    _server_edit(client, fid, version, bins=9)
    (result,) = _sync(client, login(client, spot["worker"]), _edit(fid, version, op="delete"))
    assert result["status"] == "conflict"
    assert sample_db.one("SELECT count(*) FROM twin.features WHERE id = :id", id=fid)[0] == 1


def test_update_of_a_deleted_feature_conflicts(client: TestClient, sample_db: Database,
                                               spot: dict[str, Any]) -> None:
    fid, version = spot["ids"][0], spot["versions"][0]
    assert client.delete(f"/collections/waste_points/items/{fid}", headers={
        **login(client, "admin"), "If-Match": f'"{fid}-{version}"'}).status_code == 204
    auth = login(client, spot["worker"])
    (update, delete) = _sync(client, auth, _edit(fid, version, state="full"),
                             _edit(fid, version, op="delete"))
    assert update["status"] == "conflict" and update["feature"] is None
    assert delete["status"] == "merged"  # already gone, as the device wanted


def test_geometry_and_attribute_edits_merge(client: TestClient, sample_db: Database,
                                            spot: dict[str, Any]) -> None:
    fid, version = spot["ids"][0], spot["versions"][0]
    x, y = sample_db.one("SELECT ST_X(geom), ST_Y(geom) FROM twin.features WHERE id = :id",
                id=fid)
    _server_edit(client, fid, version, state="full")
    moved = {"type": "Point", "coordinates": [x + 0.00001, y]}
    (result,) = _sync(client, login(client, spot["worker"]), _edit(fid, version, geometry=moved))
    assert result["status"] == "merged", result
    assert result["feature"]["properties"]["state"] == "full"
    assert result["feature"]["geometry"]["coordinates"][0] == pytest.approx(x + 0.00001)


def test_refused_edits_are_kept_and_the_batch_goes_on(
        client: TestClient, sample_db: Database, spot: dict[str, Any]) -> None:
    auth = login(client, spot["worker"])
    fid, version = spot["ids"][0], spot["versions"][0]
    elsewhere = sample_db.one("SELECT id, version FROM twin.features WHERE layer = "
                     "'waste_points' AND grid_code <> :g LIMIT 1", g=spot["grid"])
    results = _sync(client, auth,
                    _edit(fid, version, state="exploded"),
                    _edit(*elsewhere, state="full"),
                    {"edit_id": "broken", "op": "teleport"},
                    _edit(fid, version, bins=6))
    assert [r["status"] for r in results] == ["rejected", "rejected", "rejected", "applied"]
    assert results[0]["problems"][0]["field"] == "state"
    assert results[1]["error"] == "Forbidden"
    kept = client.get("/edits?status=rejected", headers=login(client, "admin")).json()["edits"]
    assert {e["edit_id"] for e in kept} >= {results[0]["edit_id"], results[1]["edit_id"]}
    assert client.get("/edits", headers=login(client, "planner")).json()["edits"] == []


def test_a_batch_that_is_not_one_is_refused(client: TestClient,
                                            spot: dict[str, Any]) -> None:
    auth = login(client, spot["worker"])
    assert client.post("/sync", headers=auth, json={"edit": []}).status_code == 422
    assert client.post("/sync", headers=auth, json={"edits": [{}] * 501}).status_code == 422
    assert client.post("/sync", json={"edits": []}).status_code == 401


def test_scope_is_my_grid_then_what_changed(client: TestClient, sample_db: Database,
                                            spot: dict[str, Any]) -> None:
    auth = login(client, spot["worker"])
    whole = client.get("/sync/scope", headers=auth).json()
    assert [g["properties"]["code"] for g in whole["grids"]["features"]] == [spot["grid"]]
    mine = {f["id"] for f in whole["features"]["features"] if f["layer"] == "waste_points"}
    assert set(spot["ids"]) <= mine
    total = sample_db.one("SELECT count(*) FROM twin.features WHERE layer <> ALL("
                 "ARRAY['micro_grids', 'residential_areas'])")[0]
    assert len(whole["features"]["features"]) < total / 10  # never the whole twin
    assert all("version" in f["properties"] for f in whole["features"]["features"])
    fid, version = spot["ids"][0], spot["versions"][0]
    _server_edit(client, fid, version, bins=8)
    assert client.delete(f"/collections/waste_points/items/{spot['ids'][1]}", headers={
        **login(client, "admin"), "If-Match": f'"{spot["ids"][1]}-{spot["versions"][1]}"'}
    ).status_code == 204
    since = client.get(f"/sync/scope?since={whole['cursor']}", headers=auth).json()
    assert [f["id"] for f in since["features"]["features"]] == [fid]
    assert since["features"]["features"][0]["properties"]["version"] == version + 1
    assert since["deleted"] == [{"layer": "waste_points", "id": spot["ids"][1]}]
    # The cursor stays behind any write still running anywhere in the cluster (so nothing is
    # ever skipped): what it covers may come again until that ends, then nothing does.
    for _ in range(100):
        quiet = client.get(f"/sync/scope?since={since['cursor']}", headers=auth).json()
        if not quiet["features"]["features"] and not quiet["deleted"]:
            break
        since = quiet
        time.sleep(0.1)
    assert quiet["features"]["features"] == [] and quiet["deleted"] == []
    assert client.get("/sync/scope?grids=nope", headers=auth).status_code == 403
    assert client.get("/sync/scope", headers=login(client, "planner")).status_code == 400
    assert client.get("/sync/scope?since=abc", headers=auth).status_code == 400


def test_a_synced_edit_carries_photos_into_the_feature_and_its_history(
        client: TestClient, sample_db: Database, spot: dict[str, Any]) -> None:
    from tests.features.test_photos import jpeg, sha

    auth = login(client, spot["worker"])
    photo = jpeg(b"overflowing bins")
    assert client.put(f"/photos/{sha(photo)}", headers={**auth, "Content-Type": "image/jpeg"},
                      content=photo).status_code == 201
    fid, version = spot["ids"][0], spot["versions"][0]
    (result,) = _sync(client, auth, _edit(fid, version, state="full", photos=[sha(photo)]))
    assert result["status"] == "applied"
    assert result["feature"]["properties"]["photos"] == [sha(photo)]
    history = client.get(f"/collections/waste_points/items/{fid}/history", headers=auth).json()
    assert history["versions"][0]["change"]["new"]["photos"] == [sha(photo)]
    (unknown,) = _sync(client, auth, _edit(fid, version + 1, photos=["f" * 64]))
    assert unknown["status"] == "rejected" and unknown["problems"][0]["field"] == "photos"


def test_a_device_time_without_offset_is_rejected(client: TestClient,
                                                  spot: dict[str, Any]) -> None:
    edit = _edit(spot["ids"][0], spot["versions"][0], state="full")
    (result,) = _sync(client, login(client, spot["worker"]),
                      edit | {"device_time": "2026-11-26T09:00:00"})
    assert result["status"] == "rejected"
    assert result["problems"][0]["field"] == "device_time"
