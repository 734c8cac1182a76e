"""Reverting through HTTP: new changes that restore what was replaced, never a rewritten log;
refused, with nothing changed, when a later edit would be overwritten."""

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Database, login
from twin.store.db import EditContext, editing

# Everything a feature is, exactly (geometry as EWKB), to compare before and after.
STATE = ("SELECT layer, name, props, tags, encode(ST_AsEWKB(geom), 'hex') AS geom, grid_code, "
         "area_code, version FROM twin.features WHERE id = :id")


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    return login(client, "admin")


def _query(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.app.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def _state(db: Database, fid: int) -> dict[str, Any]:
    """The feature as stored; empty when there is none."""
    rows = _query(db, STATE, id=fid)
    return rows[0] if rows else {}


def _now(db: Database) -> datetime:
    value: datetime = _query(db, "SELECT clock_timestamp() AS t")[0]["t"]
    return value


def _edit(db: Database, actor: str, sql: str, **params: Any) -> int:
    """One edit by ``actor`` in its own transaction; the id of the change it logged (the
    first: reassignments follow it)."""
    with editing(db.app, EditContext(actor=actor, role="worker")) as conn:
        conn.execute(text(sql), params)
        change: int = conn.execute(text("SELECT min(id) FROM twin.changes "
                                        "WHERE tx = pg_current_xact_id()")).scalar_one()
    return change


def _waste_points(db: Database, n: int) -> list[int]:
    rows = _query(db, "SELECT id FROM twin.features WHERE layer = 'waste_points' "
                      "AND props->>'state' = 'ok' ORDER BY id LIMIT :n", n=n)
    return [r["id"] for r in rows]


def _digest(db: Database) -> dict[str, Any]:
    """Counts and hashes of the whole log and of every feature."""
    return _query(db, """
        SELECT (SELECT count(*) FROM twin.changes) AS changes,
               (SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM twin.changes c) AS log,
               (SELECT count(*) FROM twin.features) AS features,
               (SELECT md5(string_agg(f::text, '|' ORDER BY layer, id))
                  FROM twin.features f) AS twin""")[0]


def _log(db: Database) -> dict[int, str]:
    return {r["id"]: r["row"] for r in _query(db, "SELECT id, c::text AS row FROM twin.changes c")}


def _revert(client: TestClient, headers: dict[str, str], change: int,
            reason: str = "entered by mistake") -> Any:
    return client.post(f"/changes/{change}/revert", json={"reason": reason}, headers=headers)


def test_reverting_an_update_restores_the_old_values_as_a_new_change(
        client: TestClient, admin: dict[str, str], sample_db: Database) -> None:
    (fid,) = _waste_points(sample_db, 1)
    before = _state(sample_db, fid)
    change = _edit(sample_db, "worker-a", "UPDATE twin.features SET name = 'moved', "
                   "props = props || '{\"state\": \"full\"}', geom = ST_Translate(geom, 1e-4, 0) "
                   "WHERE id = :id", id=fid)
    log_before = _log(sample_db)

    response = _revert(client, admin, change)
    assert response.status_code == 200, response.text
    ((new,),) = [r["changes"] for r in response.json()["reverted"]]
    assert response.json()["reverted"][0]["change"] == change

    after = _state(sample_db, fid)
    assert after == {**before, "version": before["version"] + 2}
    (edit,) = _query(sample_db, "SELECT * FROM twin.changes WHERE id = :id", id=change)
    (undo,) = _query(sample_db, "SELECT * FROM twin.changes WHERE id = :id", id=new)
    assert (undo["actor"], undo["role"], undo["operation"]) == ("admin", "admin", "update")
    assert undo["reason"] == f"revert of change {change}: entered by mistake"
    assert undo["changed"] == edit["changed"]
    assert undo["old_values"] == edit["new_values"] and undo["new_values"] == edit["old_values"]
    # the log only grew: every earlier row is exactly as it was
    log_after = _log(sample_db)
    assert {k: log_after[k] for k in log_before} == log_before
    assert min(set(log_after) - set(log_before)) > max(log_before)


def test_reverting_an_insert_deletes_and_reverting_a_delete_brings_the_feature_back(
        client: TestClient, admin: dict[str, str], sample_db: Database) -> None:
    created = _edit(sample_db, "worker-a", "INSERT INTO twin.features (layer, props, geom) "
                    "VALUES ('waste_points', '{\"state\": \"ok\"}', "
                    "ST_SetSRID(ST_MakePoint(121.51, 31.195), 4326))")
    (new_fid,) = [r["feature_id"] for r in _query(
        sample_db, "SELECT feature_id FROM twin.changes WHERE id = :id", id=created)]
    response = _revert(client, admin, created)
    assert response.status_code == 200, response.text
    assert _state(sample_db, new_fid) == {}
    (undo,) = response.json()["reverted"][0]["changes"]
    assert _query(sample_db, "SELECT operation, feature_id FROM twin.changes WHERE id = :id",
                  id=undo) == [{"operation": "delete", "feature_id": new_fid}]

    (fid,) = _waste_points(sample_db, 1)
    before = _state(sample_db, fid)
    deleted = _edit(sample_db, "worker-a", "DELETE FROM twin.features WHERE id = :id", id=fid)
    assert _state(sample_db, fid) == {}
    response = _revert(client, admin, deleted)
    assert response.status_code == 200, response.text
    # same id, layer and state; the version numbering goes on past the delete
    assert _state(sample_db, fid) == {**before, "version": before["version"] + 1}
    versions = _query(sample_db, "SELECT version, upper(valid) IS NULL AS current "
                      "FROM twin.feature_versions WHERE feature_id = :id ORDER BY version",
                      id=fid)
    assert versions[-2:] == [{"version": before["version"], "current": False},
                             {"version": before["version"] + 1, "current": True}]


def test_a_revert_that_would_overwrite_a_later_edit_is_refused_and_changes_nothing(
        client: TestClient, admin: dict[str, str], sample_db: Database) -> None:
    (fid,) = _waste_points(sample_db, 1)
    first = _edit(sample_db, "worker-a", "UPDATE twin.features SET props = props || "
                  "'{\"state\": \"full\"}' WHERE id = :id", id=fid)
    later = _edit(sample_db, "worker-b", "UPDATE twin.features SET props = props || "
                  "'{\"state\": \"damaged\"}' WHERE id = :id", id=fid)
    before = _digest(sample_db)

    response = _revert(client, admin, first)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "Conflict"
    assert f"change {later} by worker-b" in body["description"]
    (problem,) = body["problems"]
    assert problem["field"] == "state"
    assert problem["value"]["change"] == later and problem["value"]["actor"] == "worker-b"
    assert _digest(sample_db) == before


def test_reverting_twice_is_refused(client: TestClient, admin: dict[str, str],
                                    sample_db: Database) -> None:
    (fid,) = _waste_points(sample_db, 1)
    change = _edit(sample_db, "worker-a", "UPDATE twin.features SET name = 'x' WHERE id = :id",
                   id=fid)
    first = _revert(client, admin, change)
    assert first.status_code == 200
    (undo,) = first.json()["reverted"][0]["changes"]
    before = _digest(sample_db)
    again = _revert(client, admin, change)
    assert again.status_code == 409
    assert again.json()["problems"][0]["value"]["change"] == undo
    assert f"change {undo} by admin" in again.json()["description"]
    assert _digest(sample_db) == before


def test_an_actors_range_is_reverted_and_other_actors_edits_stay(
        client: TestClient, admin: dict[str, str], sample_db: Database) -> None:
    f, g, h = _waste_points(sample_db, 3)
    _edit(sample_db, "worker-a", "UPDATE twin.features SET name = 'before the range' "
          "WHERE id = :id", id=h)
    start = _now(sample_db)
    original = {fid: _state(sample_db, fid) for fid in (f, g)}
    a1 = _edit(sample_db, "worker-a", "UPDATE twin.features SET props = props || "
               "'{\"state\": \"full\"}' WHERE id = :id", id=f)
    _edit(sample_db, "worker-b", "UPDATE twin.features SET props = props || '{\"bins\": 9}' "
          "WHERE id = :id", id=f)
    a2 = _edit(sample_db, "worker-a", "UPDATE twin.features SET props = props || "
               "'{\"state\": \"closed\"}' WHERE id = :id", id=f)
    a3 = _edit(sample_db, "worker-a", "DELETE FROM twin.features WHERE id = :id", id=g)
    a4 = _edit(sample_db, "worker-a", "INSERT INTO twin.features (layer, props, geom) "
               "VALUES ('buildings', '{}', ST_Buffer(ST_SetSRID(ST_MakePoint(121.51, 31.195), "
               "4326), 1e-4))")
    end = _now(sample_db)
    window = {"actor": "worker-a", "from": start.isoformat(), "to": end.isoformat(),
              "reason": "bad tablet"}

    buildings = client.post("/changes/revert", json={**window, "layer": "buildings"},
                            headers=admin)
    assert buildings.status_code == 200, buildings.text
    assert [r["change"] for r in buildings.json()["reverted"]] == [a4]
    # a4 is reverted already: a second revert of it would be refused
    assert client.post("/changes/revert", json=window, headers=admin).status_code == 409
    response = client.post("/changes/revert", json={**window, "layer": "waste_points"},
                           headers=admin)
    assert response.status_code == 200, response.text
    assert [r["change"] for r in response.json()["reverted"]] == [a3, a2, a1]

    restored = _state(sample_db, f)
    assert restored["props"] == {**original[f]["props"], "bins": 9}  # worker-b's edit stays
    assert _state(sample_db, g) == {**original[g], "version": original[g]["version"] + 1}
    assert _query(sample_db, "SELECT name FROM twin.features WHERE id = :id", id=h) == [
        {"name": "before the range"}]
    reasons = _query(sample_db, "SELECT reason FROM twin.changes WHERE id = ANY(:ids) "
                     "ORDER BY id", ids=[c for r in response.json()["reverted"]
                                         for c in r["changes"]])
    assert [r["reason"] for r in reasons] == [f"revert of change {c}: bad tablet"
                                              for c in (a3, a2, a1)]


def test_an_actors_range_is_all_or_nothing(client: TestClient, admin: dict[str, str],
                                           sample_db: Database) -> None:
    f, g = _waste_points(sample_db, 2)
    start = _now(sample_db)
    _edit(sample_db, "worker-a", "UPDATE twin.features SET name = 'a' WHERE id = :id", id=g)
    _edit(sample_db, "worker-a", "UPDATE twin.features SET name = 'a' WHERE id = :id", id=f)
    later = _edit(sample_db, "worker-b", "UPDATE twin.features SET name = 'b' WHERE id = :id",
                  id=f)
    end = _now(sample_db)
    before = _digest(sample_db)
    response = client.post("/changes/revert", headers=admin, json={
        "actor": "worker-a", "from": start.isoformat(), "to": end.isoformat(), "reason": "r"})
    assert response.status_code == 409
    assert response.json()["problems"][0]["value"]["change"] == later
    assert _digest(sample_db) == before  # g's name was not reverted either


def test_only_admins_revert_and_bad_requests_say_why(client: TestClient, admin: dict[str, str],
                                                     sample_db: Database) -> None:
    (fid,) = _waste_points(sample_db, 1)
    change = _edit(sample_db, "worker-a", "UPDATE twin.features SET name = 'x' WHERE id = :id",
                   id=fid)
    window = {"actor": "worker-a", "from": "2020-01-01T00:00:00Z",
              "to": "2100-01-01T00:00:00Z", "reason": "r"}
    assert _revert(client, {}, change).status_code == 401
    assert client.post("/changes/revert", json=window).status_code == 401
    planner = login(client, "planner")
    assert _revert(client, planner, change).status_code == 403
    assert client.post("/changes/revert", json=window, headers=planner).status_code == 403
    assert _revert(client, admin, 10**12).status_code == 404

    for body, field in [({}, "reason"), ({"reason": "  "}, "reason"),
                        ({"reason": "r", "extra": 1}, "extra")]:
        response = client.post(f"/changes/{change}/revert", json=body, headers=admin)
        assert response.status_code == 400, body
        assert response.json()["problems"][0]["field"] == field
    for bad, field in [({"from": "yesterday"}, "from"), ({"to": "2020-01-01T00:00:00"}, "to"),
                       ({"to": "2019-01-01T00:00:00Z"}, "to"), ({"layer": "nope"}, "layer"),
                       ({"actor": ""}, "actor")]:
        response = client.post("/changes/revert", json={**window, **bad}, headers=admin)
        assert response.status_code == 400, bad
        assert response.json()["problems"][0]["field"] == field
        assert "value" in response.json()["problems"][0]
    assert _query(sample_db, "SELECT name FROM twin.features WHERE id = :id", id=fid) == [
        {"name": "x"}]


def test_reassignments_follow_the_reverted_grid_change(
        client: TestClient, admin: dict[str, str], sample_db: Database) -> None:
    (grid,) = _query(sample_db, "SELECT id, props->>'code' AS code FROM twin.features "
                     "WHERE layer = 'micro_grids' ORDER BY id LIMIT 1")
    members = "SELECT id FROM twin.features WHERE grid_code = :code AND layer <> 'micro_grids'"
    held = _query(sample_db, members, code=grid["code"])
    start = _now(sample_db)
    recode = _edit(sample_db, "worker-a", "UPDATE twin.features SET props = props || "
                   "'{\"code\": \"recoded\"}' WHERE id = :id", id=grid["id"])
    end = _now(sample_db)
    reassigned = _query(sample_db, "SELECT id FROM twin.changes WHERE id > :id AND reason LIKE "
                        "'reassigned:%' ORDER BY id", id=recode)
    assert held and len(reassigned) == len(held)

    # a reassignment only re-derived the grid: there is nothing of its own to revert
    response = _revert(client, admin, reassigned[0]["id"])
    assert response.status_code == 400 and response.json()["problems"][0]["field"] == "id"

    response = client.post("/changes/revert", headers=admin, json={
        "actor": "worker-a", "from": start.isoformat(), "to": end.isoformat(), "reason": "r"})
    assert response.status_code == 200, response.text
    ((change, new),) = [(r["change"], r["changes"]) for r in response.json()["reverted"]]
    assert change == recode and len(new) == 1 + len(held)  # the grid, then its features
    assert _query(sample_db, members, code=grid["code"]) == held
