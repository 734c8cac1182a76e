"""The update log over HTTP: feed, CSV, history, time travel, diff, live stream, roles."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from tests.conftest import Database, Server, bearer, login


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return login(client, "planner")


def _edit(db: Database, sql: str, params: dict[str, Any] | None = None, *,
          actor: str = "planner", role: str = "planner", clock: str | None = None,
          reason: str | None = None) -> None:
    """One transaction as ``actor``, stamped ``clock`` when given (the schema owner may)."""
    with db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context(:a, :r, 'test', :why)"),
                     {"a": actor, "r": role, "why": reason})
        if clock:
            conn.execute(text("SELECT set_config('twin.clock', :t, true)"), {"t": clock})
        conn.execute(text(sql), params or {})


def _one(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).one()


def _waste_point(db: Database) -> tuple[int, str]:
    with db.app.connect() as conn:
        row = _one(conn, "SELECT id, grid_code FROM twin.features WHERE layer = 'waste_points' "
                         "ORDER BY id LIMIT 1")
    return int(row.id), str(row.grid_code)


def _pages(client: TestClient, auth: dict[str, str], url: str) -> Iterator[dict[str, Any]]:
    while url:
        response = client.get(url, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        yield body
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), "")


def test_a_feed_page_has_every_field_newest_first(client: TestClient, auth: dict[str, str],
                                                   sample_db: Database) -> None:
    fid, grid = _waste_point(sample_db)
    _edit(sample_db, "UPDATE twin.features SET props = props || '{\"state\": \"full\"}' "
                     "WHERE id = :id", {"id": fid}, reason="满溢 full")
    body = client.get("/changes?limit=5", headers=auth).json()
    assert body["numberReturned"] == 5
    newest = body["changes"][0]
    assert newest["feature_id"] == fid and newest["operation"] == "update"
    assert newest["actor"] == "planner" and newest["role"] == "planner"
    assert newest["device"] == "test" and newest["reason"] == "满溢 full"
    assert newest["changed"] == ["state"] and newest["new"] == {"state": "full"}
    assert newest["old"] == {"state": "ok"} or newest["old"]["state"] != "full"
    assert newest["version_after"] == newest["version_before"] + 1
    assert newest["micro_grid"] == grid and newest["geometry_changed"] is False
    assert {"id", "time", "client_time", "layer", "residential_area", "edit_id"} <= set(newest)
    ids = [change["id"] for change in body["changes"]]
    assert ids == sorted(ids, reverse=True)


def test_paging_oldest_first_returns_every_change_once(client: TestClient, auth: dict[str, str],
                                                       sample_db: Database) -> None:
    seen = [c["id"] for page in _pages(client, auth, "/changes?order=oldest&limit=1000")
            for c in page["changes"]]
    with sample_db.app.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM twin.changes")).scalar()
    assert len(seen) == len(set(seen)) == total


def test_filters_select_what_sql_selects(client: TestClient, auth: dict[str, str],
                                         sample_db: Database) -> None:
    fid, grid = _waste_point(sample_db)
    _edit(sample_db, "UPDATE twin.features SET name = 'renamed' WHERE id = :id", {"id": fid},
          actor=f"worker-{grid}", role="worker", clock="2026-03-01T09:00:00+08:00")
    _edit(sample_db, "DELETE FROM twin.features WHERE id = :id", {"id": fid},
          clock="2026-03-02T09:00:00+08:00")
    cases = {
        f"micro_grid={grid}": ("grid_code = :v", grid),
        f"actor=worker-{grid}": ("actor = :v", f"worker-{grid}"),
        "operation=delete": ("operation = :v", "delete"),
        "layer=waste_points": ("layer = :v", "waste_points"),
        "role=worker": ("role = :v", "worker"),
        f"feature_id={fid}": ("feature_id = :v", fid),
        "from=2026-03-01T00:00:00%2B08:00&to=2026-03-02T00:00:00%2B08:00":
            ("server_time >= '2026-03-01T00:00:00+08' AND server_time < '2026-03-02T00:00+08' "
             "AND :v IS NOT NULL", 1),
    }
    for query, (where, value) in cases.items():
        got = sorted(c["id"] for page in _pages(client, auth, f"/changes?{query}&limit=500")
                     for c in page["changes"])
        with sample_db.app.connect() as conn:
            want = sorted(conn.execute(text(f"SELECT id FROM twin.changes WHERE {where}"),
                                       {"v": value}).scalars())
        assert got == want and got, query


def test_bbox_finds_changes_where_they_happened(client: TestClient, auth: dict[str, str],
                                                sample_db: Database) -> None:
    fid, _ = _waste_point(sample_db)
    with sample_db.app.connect() as conn:
        x, y = _one(conn, "SELECT ST_X(geom), ST_Y(geom) FROM twin.features WHERE id = :id",
                    id=fid)
    # moved 0.01 degrees east: both the old and the new place find the change
    _edit(sample_db, "UPDATE twin.features SET geom = ST_Translate(geom, 0.01, 0) "
                     "WHERE id = :id", {"id": fid})
    for cx in (x, x + 0.01):
        box = f"{cx - 1e-5},{y - 1e-5},{cx + 1e-5},{y + 1e-5}"
        changes = client.get(f"/changes?bbox={box}&operation=update", headers=auth).json()
        assert [c["feature_id"] for c in changes["changes"]] == [fid]
        assert changes["changes"][0]["geometry_changed"] is True


def test_a_late_commit_is_never_skipped(client: TestClient, auth: dict[str, str],
                                        sample_db: Database) -> None:
    """A change drawn first but committed last still reaches a reader paging oldest first."""
    first, second = sample_db.admin.connect(), sample_db.admin.connect()
    ids = [i for (i,) in sample_db.app.connect().execute(text(
        "SELECT id FROM twin.features WHERE layer = 'waste_points' ORDER BY id LIMIT 2"))]
    try:
        first.execute(text("UPDATE twin.features SET name = 'early' WHERE id = :id"),
                      {"id": ids[0]})  # its change id is drawn now, its commit comes later
        second.execute(text("UPDATE twin.features SET name = 'late' WHERE id = :id"),
                       {"id": ids[1]})
        second.commit()
        cursor = list(_pages(client, auth, "/changes?order=oldest&limit=1000"))[-1][
            "changes"][-1]["id"]
        after = client.get(f"/changes?order=oldest&cursor={cursor}", headers=auth).json()
        assert after["changes"] == []  # both wait until the older transaction ends
        first.commit()
        # the horizon is the cluster's: another database's open transaction may hold it a while
        deadline, rest = time.monotonic() + 20, []
        while len(rest) < 2 and time.monotonic() < deadline:
            rest = [c["feature_id"] for p in _pages(
                client, auth, f"/changes?order=oldest&limit=1000&cursor={cursor}")
                for c in p["changes"]]
            time.sleep(0.2)
        assert rest == ids
    finally:
        first.close()
        second.close()


def test_paging_while_a_writer_runs_skips_and_repeats_nothing(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    with sample_db.app.connect() as conn:
        start = conn.execute(text("SELECT max(id) FROM twin.changes")).scalar()
        ids = list(conn.execute(text("SELECT id FROM twin.features WHERE layer = "
                                     "'waste_points' ORDER BY id LIMIT 40")).scalars())
    stop = threading.Event()
    updates = threading.Semaphore(0)

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            _edit(sample_db, "UPDATE twin.features SET name = :n WHERE id = ANY(:ids)",
                  {"n": f"w{n}", "ids": ids[n % 4::4]})
            updates.release()

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []

    def read(limit: int) -> None:
        nonlocal cursor
        body = client.get(f"/changes?order=oldest&limit={limit}&cursor={cursor}",
                          headers=auth).json()
        seen.extend(c["id"] for c in body["changes"])
        cursor = str(seen[-1]) if seen else cursor

    cursor = str(start)
    try:
        for i in range(30):
            read(7)
            if i % 6 == 5:
                assert updates.acquire(timeout=30)  # the writer keeps writing, even on a slow host
    finally:
        stop.set()
        writer.join()
    with sample_db.app.connect() as conn:
        written = list(conn.execute(text("SELECT id FROM twin.changes WHERE id > :s"),
                                    {"s": start}).scalars())
    # The feed shows changes once every older transaction in the cluster has ended: other
    # databases' writers (other tests, benchmarks) may hold it back for a while.
    deadline = time.monotonic() + 60
    while len(seen) < len(written) and time.monotonic() < deadline:
        read(1000)
        time.sleep(0.05)
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(written) and len(written) > 40


def test_csv_is_the_log_as_a_table(client: TestClient, auth: dict[str, str],
                                   sample_db: Database) -> None:
    response = client.get("/changes?f=csv&layer=streets&order=oldest", headers=auth)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    with sample_db.app.connect() as conn:
        want = list(conn.execute(text("SELECT id FROM twin.changes WHERE layer = 'streets' "
                                      "ORDER BY tx, id")).scalars())
    assert [int(row["id"]) for row in rows] == want
    assert {"actor", "operation", "changed", "old", "new", "reason"} <= set(rows[0])
    assert json.loads(rows[0]["new"])["geometry"]["type"] == "LineString"


@pytest.mark.parametrize(("query", "field"), [
    ("order=sideways", "order"), ("limit=0", "limit"), ("limit=x", "limit"),
    ("cursor=abc", "cursor"), ("cursor=999999999", "cursor"), ("layer=nowhere", "layer"),
    ("operation=rename", "operation"), ("role=king", "role"), ("from=yesterday", "from"),
    ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "to"), ("bbox=1,2,3", "bbox"),
    ("f=xml", "f"), ("colour=red", "colour"), ("feature_id=-3", "feature_id"),
])
def test_bad_feed_parameters_are_400_naming_them(client: TestClient, auth: dict[str, str],
                                                 query: str, field: str) -> None:
    response = client.get(f"/changes?{query}", headers=auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["description"]


def test_a_features_history_and_its_deletion(client: TestClient, auth: dict[str, str],
                                             sample_db: Database) -> None:
    fid, _ = _waste_point(sample_db)
    _edit(sample_db, "UPDATE twin.features SET props = props || '{\"state\": \"full\"}' "
                     "WHERE id = :id", {"id": fid}, reason="满溢")
    _edit(sample_db, "UPDATE twin.features SET tags = tags || '{checked}' WHERE id = :id",
          {"id": fid}, actor="commander", role="commander")
    _edit(sample_db, "DELETE FROM twin.features WHERE id = :id", {"id": fid}, reason="拆除")
    body = client.get(f"/collections/waste_points/items/{fid}/history", headers=auth).json()
    assert body["deleted"] is True
    versions = body["versions"][::-1]  # newest first
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert versions[1]["change"]["new"] == {"state": "full"}
    assert versions[1]["change"]["reason"] == "满溢"
    assert versions[2]["change"]["actor"] == "commander"
    assert "checked" in versions[2]["feature"]["properties"]["tags"]
    assert versions[0]["valid_to"] == versions[1]["valid_from"]
    assert versions[2]["valid_to"] is not None  # closed by the delete
    assert body["deleted_by"]["reason"] == "拆除"
    paged = [v["version"] for page in _pages(
        client, auth, f"/collections/waste_points/items/{fid}/history?limit=1")
        for v in page["versions"]]
    assert paged == [3, 2, 1]
    assert client.get(f"/collections/waste_points/items/{fid}/history?cursor=x",
                      headers=auth).status_code == 400
    # the deleted feature is found through the feed
    found = client.get(f"/changes?operation=delete&layer=waste_points&feature_id={fid}",
                       headers=auth).json()
    assert found["numberReturned"] == 1
    missing = client.get("/collections/waste_points/items/99999999/history", headers=auth)
    assert missing.status_code == 404
    assert client.get(f"/collections/nowhere/items/{fid}/history",
                      headers=auth).status_code == 404


def test_a_history_needs_a_live_token_and_is_gzipped_when_asked(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    fid, _ = _waste_point(sample_db)
    path = f"/collections/waste_points/items/{fid}/history"
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 401 and "token" in refused.json()["description"]
    for _ in range(12):  # a history large enough to compress
        _edit(sample_db, "UPDATE twin.features SET tags = tags || '{checked}' WHERE id = :id",
              {"id": fid})
    zipped = client.get(path, headers={**auth, "Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    plain = client.get(path, headers={**auth, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert zipped.json() == plain.json() and len(plain.json()["versions"]) == 13


def test_time_travel_across_insert_update_delete_and_reinsert(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    fid, _ = _waste_point(sample_db)
    with sample_db.app.connect() as conn:
        x, y = _one(conn, "SELECT ST_X(geom), ST_Y(geom) FROM twin.features WHERE id = :id",
                    id=fid)
    new_id = 90_000_001
    _edit(sample_db, "INSERT INTO twin.features (id, layer, name, geom) VALUES (:id, "
                     "'waste_points', 'born', ST_SetSRID(ST_Point(:x, :y), 4326))",
          {"id": new_id, "x": x + 1e-5, "y": y}, clock="2030-01-01T08:00:00+08:00")
    _edit(sample_db, "UPDATE twin.features SET name = 'grown' WHERE id = :id", {"id": new_id},
          clock="2030-01-02T08:00:00+08:00")
    _edit(sample_db, "DELETE FROM twin.features WHERE id = :id", {"id": new_id},
          clock="2030-01-03T08:00:00+08:00")
    _edit(sample_db, "INSERT INTO twin.features (id, layer, name, geom) VALUES (:id, "
                     "'waste_points', 'back', ST_SetSRID(ST_Point(:x, :y), 4326))",
          {"id": new_id, "x": x + 1e-5, "y": y}, clock="2030-01-04T08:00:00+08:00")
    box = f"{x - 1e-4},{y - 1e-4},{x + 1e-4},{y + 1e-4}"
    expected = {"2029-12-31": None, "2030-01-01": "born", "2030-01-02": "grown",
                "2030-01-03": None, "2030-01-04": "back"}
    for day, name in expected.items():
        at = f"{day}T12:00:00%2B08:00"
        item = client.get(f"/collections/waste_points/items/{new_id}?asOf={at}", headers=auth)
        page = client.get(f"/collections/waste_points/items?bbox={box}&asOf={at}",
                          headers=auth).json()
        names = {f["id"]: f["properties"]["name"] for f in page["features"]}
        if name is None:
            assert item.status_code == 404 and new_id not in names
        else:
            assert item.json()["properties"]["name"] == name and names[new_id] == name
    history = client.get(f"/collections/waste_points/items/{new_id}/history",
                         headers=auth).json()
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]  # numbering goes on
    assert history["deleted"] is False and history["deleted_by"] is None
    bad = client.get("/collections/waste_points/items?asOf=soon", headers=auth)
    assert bad.status_code == 400 and "asOf" in bad.json()["description"]


def test_diff_between_two_moments(client: TestClient, auth: dict[str, str],
                                  sample_db: Database) -> None:
    with sample_db.app.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, ST_X(geom) AS x, ST_Y(geom) AS y, grid_code FROM twin.features "
            "WHERE layer = 'waste_points' ORDER BY id LIMIT 2")).all()
    (kept, x, y, grid), (gone, *_) = rows
    _edit(sample_db, "UPDATE twin.features SET props = props || '{\"state\": \"damaged\"}' "
                     "WHERE id = :id", {"id": kept}, clock="2030-02-01T08:00:00+08:00")
    _edit(sample_db, "DELETE FROM twin.features WHERE id = :id", {"id": gone},
          clock="2030-02-01T09:00:00+08:00")
    _edit(sample_db, "INSERT INTO twin.features (layer, name, geom) VALUES ('waste_points', "
                     "'new', ST_SetSRID(ST_Point(:x, :y), 4326))", {"x": x, "y": y},
          clock="2030-02-01T10:00:00+08:00")
    params = "from=2030-01-31T00:00:00%2B08:00&to=2030-02-02T00:00:00%2B08:00"
    with sample_db.app.connect() as conn:
        gone_grid = conn.execute(text("SELECT grid_code FROM twin.feature_versions WHERE "
                                      "feature_id = :id"), {"id": gone}).scalar()
    box = "121.0,30.0,122.5,32.0"
    body = client.get(f"/changes/diff?{params}&bbox={box}", headers=auth).json()
    kinds = {f["id"]: f["properties"] for f in body["features"]}
    assert kinds[kept]["diff"] == "changed"
    assert kinds[kept]["fields"] == {"state": {"old": "ok", "new": "damaged"}} or \
        kinds[kept]["fields"]["state"]["new"] == "damaged"
    assert kinds[gone]["diff"] == "removed"
    assert [p["diff"] for p in kinds.values()].count("added") == 1
    by_grid = client.get(f"/changes/diff?{params}&micro_grid={gone_grid}", headers=auth).json()
    assert gone in {f["id"] for f in by_grid["features"]}
    nothing = client.get("/changes/diff?from=2030-03-01T00:00:00Z&to=2030-03-02T00:00:00Z"
                         f"&bbox={box}", headers=auth).json()
    assert nothing["features"] == []
    for query in ("from=2030-01-01T00:00:00Z", f"{params}", f"{params}&bbox={box}&micro_grid=x",
                  "from=2030-03-02T00:00:00Z&to=2030-03-01T00:00:00Z&bbox=1,1,2,2"):
        assert client.get(f"/changes/diff?{query}", headers=auth).status_code == 400, query
    assert grid  # the kept feature had a grid


def test_workers_see_only_their_own_grids(client: TestClient, sample_db: Database) -> None:
    with sample_db.app.connect() as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT ON (grid_code) id, grid_code FROM twin.features "
            "WHERE layer = 'waste_points' AND grid_code IS NOT NULL ORDER BY grid_code, id "
            "LIMIT 2")).all()
    (mine, my_grid), (theirs, their_grid) = rows
    worker = login(client, f"worker-{my_grid}")
    feed = [c for p in _pages(client, worker, "/changes?limit=1000") for c in p["changes"]]
    assert feed and {c["micro_grid"] for c in feed} == {my_grid}
    assert client.get(f"/collections/waste_points/items/{mine}/history",
                      headers=worker).status_code == 200
    refused = client.get(f"/collections/waste_points/items/{theirs}/history", headers=worker)
    assert refused.status_code == 403 and their_grid not in refused.json()["description"]
    diff = "/changes/diff?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z"
    assert client.get(f"{diff}&micro_grid={their_grid}", headers=worker).status_code == 403
    assert client.get(f"{diff}&micro_grid={my_grid}", headers=worker).status_code == 200


def test_nobody_alters_the_log_through_the_api(client: TestClient, sample_db: Database) -> None:
    admin = login(client, "admin")
    with sample_db.app.connect() as conn:
        before = conn.execute(text("SELECT count(*), max(id) FROM twin.changes")).one()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert client.request(method, "/changes", headers=admin).status_code == 405
    assert client.get("/changes", headers={}).status_code == 401
    with sample_db.app.connect() as conn:
        assert conn.execute(text("SELECT count(*), max(id) FROM twin.changes")).one() == before


def _events(response: httpx.Response, n: int, timeout: float) -> list[dict[str, Any]]:
    """The next ``n`` change events of an open stream (id and data), within ``timeout``."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    for line in response.iter_lines():
        assert time.monotonic() < deadline, f"only {len(found)} of {n} events in {timeout} s"
        if line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif not line and "data" in current:
            found.append(current)
            current = {}
            if len(found) == n:
                return found
    raise AssertionError("the stream ended")


def test_the_live_stream_delivers_and_resumes(live_url: str, sample_db: Database) -> None:
    headers = {"Authorization": f"Bearer {bearer(live_url)}"}
    fid, _ = _waste_point(sample_db)
    # generous timeouts: a transaction of a test running beside this one, in another database
    # of the cluster, holds the horizon (how soon is the next test's to check)
    with httpx.Client(base_url=live_url, headers=headers, timeout=40) as http:
        with http.stream("GET", "/changes/stream?layer=waste_points") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            time.sleep(0.3)
            _edit(sample_db, "UPDATE twin.features SET name = 'live' WHERE id = :id",
                  {"id": fid})
            (event,) = _events(stream, 1, timeout=30)
            assert event["data"]["feature_id"] == fid and event["data"]["new"]["name"] == "live"
            last = event["id"]
        # while nobody listens, two more changes, one in another layer
        _edit(sample_db, "UPDATE twin.features SET name = 'missed 1' WHERE id = :id",
              {"id": fid})
        _edit(sample_db, "UPDATE twin.features SET name = 'other' WHERE id = (SELECT min(id) "
                         "FROM twin.features WHERE layer = 'streets')")
        _edit(sample_db, "UPDATE twin.features SET name = 'missed 2' WHERE id = :id",
              {"id": fid})
        with http.stream("GET", "/changes/stream?layer=waste_points",
                         headers={"Last-Event-ID": str(last)}) as stream:
            names = [e["data"]["new"]["name"] for e in _events(stream, 2, timeout=30)]
        assert names == ["missed 1", "missed 2"]
        assert http.get("/changes/stream", headers={"Last-Event-ID": "oops"}).status_code == 400


def test_a_change_held_behind_a_running_transaction_comes_when_that_ends(
        live_url: str, server: Server, sample_db: Database) -> None:
    """A transaction left open in another database of the cluster holds back the horizon
    the stream reads below; the change's notification has gone by the time it ends (and that
    transaction sends none), so the stream must look again by itself, not at its heartbeat."""
    headers = {"Authorization": f"Bearer {bearer(live_url)}"}
    fid, _ = _waste_point(sample_db)
    elsewhere = server.create(f"{sample_db.name}_other")
    try:
        with httpx.Client(base_url=live_url, headers=headers, timeout=40) as http, \
                http.stream("GET", "/changes/stream?layer=waste_points") as stream, \
                elsewhere.admin.connect() as other:
            time.sleep(0.3)
            other.execute(text("SELECT pg_current_xact_id()"))  # an open transaction, an id
            _edit(sample_db, "UPDATE twin.features SET name = 'held' WHERE id = :id",
                  {"id": fid})
            time.sleep(1.5)
            other.rollback()
            ended = time.monotonic()
            (event,) = _events(stream, 1, timeout=30)
            # well before the 15 s heartbeat (looked for again each half second; loose, as
            # another test's transaction beside this one may hold the horizon a little longer)
            assert time.monotonic() - ended < 8
            assert event["data"]["new"]["name"] == "held"
    finally:
        server.drop(elsewhere)


def test_the_heat_map_counts_every_change_once_per_cell(client: TestClient,
                                                       sample_db: Database) -> None:
    auth = login(client, "commander")
    body = client.get("/changes/heat?cell_m=100", headers=auth)
    assert body.status_code == 200, body.text
    heat = body.json()
    with sample_db.app.connect() as conn:
        total = _one(conn, "SELECT count(*) FROM twin.changes "
                     "WHERE server_time >= now() - interval '7 days'")[0]
        grid = _one(conn, "SELECT grid_code FROM twin.changes WHERE grid_code IS NOT NULL "
                    "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0]
        in_grid = _one(conn, "SELECT count(*) FROM twin.changes WHERE grid_code = :g",
                       g=grid)[0]
    counts = [n for _lon, _lat, n in heat["cells"]]
    assert heat["changes"] == sum(counts) == total > 0
    assert heat["max"] == max(counts) > 1 and heat["cell_m"] == 100
    assert all(121.4 < lon < 121.7 and 31.1 < lat < 31.3 for lon, lat, _n in heat["cells"])
    # the cells are distinct, on the grid
    assert len({(lon, lat) for lon, lat, _n in heat["cells"]}) == len(heat["cells"])
    # a worker sees the heat of their own micro-grid only
    mine = client.get("/changes/heat", headers=login(client, f"worker-{grid}")).json()
    assert mine["changes"] == in_grid
    # a period with nothing in it, and bad parameters
    empty = client.get("/changes/heat?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z",
                       headers=auth).json()
    assert (empty["cells"], empty["max"], empty["changes"]) == ([], 0, 0)
    for query, field in (("cell_m=0", "cell_m"), ("cell_m=wide", "cell_m"),
                         ("order=oldest", "order"), ("layer=nowhere", "layer")):
        refused = client.get(f"/changes/heat?{query}", headers=auth)
        assert refused.status_code in (400, 422), refused.text
        assert field in [p["field"] for p in refused.json()["problems"]]
