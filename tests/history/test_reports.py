"""Period reports of changes: exact counts for any [from, to), by HTTP and by the CLI.

The edits below are placed in time with twin.clock (the schema owner may set it) around local
midnights, and around Havana's DST changes at midnight, so that whole days come from the daily
counts and the partial ends from the log; every answer is checked against a GROUP BY over
twin.changes itself.
"""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Database, Server, login, run_twin
from twin.registry import all_layers
from twin.store.migrate import migrate

STATE_FIELDS = json.dumps({name: layer.state_field for name, layer in all_layers().items()
                           if layer.state_field})
COLUMNS = {"layer": "layer", "grid": "grid_code", "area": "area_code", "actor": "actor"}
RANGES = [
    ("2025-03-01T00:00:00+08:00", "2025-03-07T00:00:00+08:00"),  # whole Shanghai days
    ("2025-03-01T03:00:00+08:00", "2025-03-06T00:00:00+08:00"),  # a change sits on `to`
    ("2025-03-01T05:00:00+08:00", "2025-03-06T00:00:00.000001+08:00"),  # ... and now inside
    ("2025-03-02T10:00:00+08:00", "2025-03-02T20:00:00+08:00"),  # inside one day
    ("2025-02-28T20:00:00Z", "2025-03-04T13:00:00Z"),
    ("2025-03-08T00:00:00-05:00", "2025-03-10T00:00:00-04:00"),  # Havana skips midnight
    ("2025-11-02T05:00:00Z", "2025-11-04T00:00:00Z"),  # ... and has it twice: 04:00, 05:00Z
    ("2025-11-01T00:00:00Z", "2025-11-02T04:45:00Z"),
    ("2025-03-01T00:00:00+08:00", "2025-04-01T00:00:00+08:00"),  # a whole month
    ("2025-02-10T12:00:00+08:00", "2025-04-20T00:00:00+08:00"),  # ... and days around it
    ("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    # February and April mostly covered: each month's counts less its days outside
    ("2025-02-03T07:00:00+08:00", "2025-04-28T12:00:00+08:00"),
]
# Edits beside the 5-hourly ones: in the months around March, and around Havana's DST changes.
MORE_EDITS = ["2025-02-20T12:00:00+08:00", "2025-04-10T12:00:00+08:00",
              "2025-02-02T12:00:00+08:00", "2025-04-29T12:00:00+08:00",  # days taken away
              "2025-03-09T04:30:00Z", "2025-03-09T04:59:59Z", "2025-03-09T05:00:00Z",
              "2025-03-09T05:30:00Z", "2025-11-02T03:59:59Z", "2025-11-02T04:00:00Z",
              "2025-11-02T04:30:00Z", "2025-11-02T05:00:00Z", "2025-11-02T05:30:00Z"]


def _grids(db: Database) -> tuple[str, str]:
    """Two micro-grids holding at least two fire passages and a waste point each."""
    with db.app.connect() as conn:
        first, second = conn.execute(text(
            "SELECT grid_code FROM twin.features WHERE grid_code IS NOT NULL "
            "GROUP BY 1 HAVING count(*) FILTER (WHERE layer = 'fire_passages') >= 2 "
            "AND count(*) FILTER (WHERE layer = 'waste_points') >= 1 ORDER BY 1 LIMIT 2"
        )).scalars()
    return first, second


def _edit(db: Database, when: str, actor: str, role: str, sql: str, **params: Any) -> None:
    """One edit by ``actor`` logged at ``when`` (twin.clock), as the schema owner."""
    with db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context(:actor, :role)"),
                     {"actor": actor, "role": role})
        conn.execute(text("SELECT set_config('twin.clock', :when, true)"), {"when": when})
        conn.execute(text(sql), params)


# One edit of each kind in micro-grid :grid, choosing its feature in SQL.
_PASSAGE = ("(SELECT {}(id) FROM twin.features WHERE layer = 'fire_passages' "
            "AND grid_code = :grid)")
_TOGGLE = ("UPDATE twin.features SET props = jsonb_set(props, '{state}', to_jsonb(CASE "
           "props->>'state' WHEN 'open' THEN 'blocked' ELSE 'open' END)) WHERE id = ")
_EDITS = [
    _TOGGLE + _PASSAGE.format("min"),
    _TOGGLE + _PASSAGE.format("max"),
    "UPDATE twin.features SET props = jsonb_set(props, '{width_m}', to_jsonb((props->>"
    "'width_m')::float + 1)) WHERE id = " + _PASSAGE.format("min"),
    "INSERT INTO twin.features (layer, name, props, geom) SELECT 'waste_points', 'new point', "
    "'{\"state\": \"ok\"}', ST_PointOnSurface(geom) FROM twin.features WHERE id = "
    + _PASSAGE.format("min"),
    "DELETE FROM twin.features WHERE id = (SELECT max(id) FROM twin.features "
    "WHERE layer = 'waste_points' AND grid_code = :grid)",
]


def _history(db: Database) -> None:
    """Edits every 5 hours from 2025-03-01 local midnight, then MORE_EDITS."""
    grids = _grids(db)
    actors = [(f"worker-{grids[0]}", "worker"), ("planner", "planner"), ("admin", "admin")]
    start = datetime.fromisoformat("2025-03-01T00:00:00+08:00")
    times = [(start + timedelta(hours=5 * k)).isoformat() for k in range(30)] + MORE_EDITS
    for k, when in enumerate(times):
        _edit(db, when, *actors[k % 3], _EDITS[k % 5], grid=grids[k % 2])


def _expected(db: Database, start: str, end: str, by: str,
              grids: list[str] | None = None) -> tuple[dict[str | None, dict[str, int]],
                                                       Counter[tuple[str, str, str]]]:
    """The answer straight from twin.changes: counts per group, and the transitions."""
    moved = ("operation = 'update' AND (old_values ->> (CAST(:fields AS jsonb) ->> layer)) "
             "<> (new_values ->> (CAST(:fields AS jsonb) ->> layer))")
    with db.app.connect() as conn:
        rows = conn.execute(text(
            f"SELECT {COLUMNS[by]}, operation, layer, old_values ->> (CAST(:fields AS jsonb) "
            f"->> layer), new_values ->> (CAST(:fields AS jsonb) ->> layer), count(*), "
            f"count(*) FILTER (WHERE {moved}) FROM twin.changes "
            f"WHERE server_time >= :start AND server_time < :end "
            f"AND (CAST(:grids AS text[]) IS NULL OR grid_code = ANY(:grids)) "
            f"GROUP BY 1, 2, 3, 4, 5"),
            {"fields": STATE_FIELDS, "start": start, "end": end, "grids": grids}).all()
    groups: dict[str | None, dict[str, int]] = {}
    transitions: Counter[tuple[str, str, str]] = Counter()
    for key, operation, layer, state_from, state_to, n, n_moved in rows:
        counts = groups.setdefault(key, {"inserts": 0, "updates": 0, "deletes": 0,
                                         "transitions": 0, "changes": 0})
        counts[f"{operation}s"] += n
        counts["changes"] += n
        counts["transitions"] += n_moved
        if n_moved:
            transitions[(layer, state_from, state_to)] += n_moved
    return groups, transitions


def _report(client: TestClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = client.get("/reports/changes", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _check(client: TestClient, db: Database, headers: dict[str, str], by: str,
           start: str, end: str, grids: list[str] | None = None) -> dict[str, Any]:
    """The report for [start, end) by ``by`` is what twin.changes says, group by group."""
    body = _report(client, headers, **{"from": start, "to": end, "by": by})
    groups, transitions = _expected(db, start, end, by, grids)
    got = {group[by]: {k: v for k, v in group.items() if k != by} for group in body["groups"]}
    assert got == groups, (by, start, end)
    assert body["total"] == {name: sum(g[name] for g in groups.values())
                             for name in ("inserts", "updates", "deletes", "transitions",
                                          "changes")}
    assert {(t["layer"], t["from"], t["to"]): t["n"] for t in body["transitions"]} == dict(
        transitions)
    return body


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "UTC", "America/Havana"])
def test_counts_equal_the_log_for_whole_and_partial_days(
        client: TestClient, sample_db: Database, server: Server, zone: str) -> None:
    role = None if server.settings.database_url else server.settings.app_role
    migrate(sample_db.admin, role, time_zone=zone)  # a new zone recounts the log
    _history(sample_db)
    headers = login(client, "planner")
    for start, end in RANGES:
        for by in COLUMNS:
            _check(client, sample_db, headers, by, start, end)
    body = _report(client, headers, **{"from": RANGES[0][0], "to": RANGES[0][1]})
    assert body["by"] == "layer"  # the default
    assert body["total"]["transitions"] > 0 and body["total"]["deletes"] > 0


def test_status_transitions_are_counted_with_their_labels(client: TestClient,
                                                          sample_db: Database) -> None:
    _history(sample_db)
    body = _report(client, login(client, "commander"), **{
        "from": "2025-03-01T00:00:00+08:00", "to": "2025-03-07T00:00:00+08:00",
        "layer": "fire_passages"})
    assert [group["layer"] for group in body["groups"]] == ["fire_passages"]
    moves = {(t["from"], t["to"]): t for t in body["transitions"]}
    assert set(moves) <= {("open", "blocked"), ("blocked", "open")} and moves
    assert sum(t["n"] for t in moves.values()) == body["total"]["transitions"]
    assert body["total"]["transitions"] < body["total"]["updates"]  # widening is no transition
    if ("blocked", "open") in moves:
        assert moves[("blocked", "open")]["from_label"] == "堵塞 blocked"
        assert moves[("blocked", "open")]["to_label"] == "畅通 open"


def test_the_counts_the_trigger_keeps_equal_a_recount(sample_db: Database,
                                                      server: Server) -> None:
    _history(sample_db)
    counts = "SELECT * FROM twin.change_counts ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
    with sample_db.app.connect() as conn:
        kept = conn.execute(text(counts)).all()
    role = None if server.settings.database_url else server.settings.app_role
    migrate(sample_db.admin, role, time_zone="UTC")
    migrate(sample_db.admin, role)  # back to the default zone: counted afresh from the log
    with sample_db.app.connect() as conn:
        assert conn.execute(text(counts)).all() == kept
        for period in ("day", "month"):
            assert conn.execute(text("SELECT sum(n) FROM twin.change_counts WHERE period = "
                                     ":period"), {"period": period}).scalar() == (
                conn.execute(text("SELECT count(*) FROM twin.changes")).scalar())


def test_a_worker_counts_only_their_own_micro_grids(client: TestClient,
                                                    sample_db: Database) -> None:
    _history(sample_db)
    mine, other = _grids(sample_db)
    headers = login(client, f"worker-{mine}")
    for start, end in RANGES[:5]:
        body = _check(client, sample_db, headers, "grid", start, end, grids=[mine])
        assert {group["grid"] for group in body["groups"]} <= {mine}
        _check(client, sample_db, headers, "actor", start, end, grids=[mine])
    everyone = _report(client, login(client, "admin"), **{
        "from": RANGES[0][0], "to": RANGES[0][1], "by": "grid"})
    assert {mine, other} <= {group["grid"] for group in everyone["groups"]}


@pytest.mark.parametrize(("params", "field"), [
    ({"to": "2025-03-02T00:00:00Z"}, "from"),
    ({"from": "2025-03-01T00:00:00Z"}, "to"),
    ({"from": "yesterday", "to": "2025-03-02T00:00:00Z"}, "from"),
    ({"from": "2025-03-01T00:00:00", "to": "2025-03-02T00:00:00Z"}, "from"),
    ({"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "to"),
    ({"from": "2025-03-02T00:00:00Z", "to": "2025-03-02T00:00:00Z"}, "to"),
    ({"from": "2025-03-01T00:00:00Z", "to": "2025-03-02T00:00:00Z", "by": "street"}, "by"),
    ({"from": "2025-03-01T00:00:00Z", "to": "2025-03-02T00:00:00Z", "layer": "trees"},
     "layer"),
    ({"from": "2025-03-01T00:00:00Z", "to": "2025-03-02T00:00:00Z", "group": "grid"},
     "group"),
])
def test_bad_parameters_are_400_naming_parameter_value_and_reason(
        client: TestClient, params: dict[str, str], field: str) -> None:
    response = client.get("/reports/changes", params=params, headers=login(client, "planner"))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "InvalidParameterValue"
    problem = next(p for p in body["problems"] if p["field"] == field)
    assert problem["reason"] and problem["reason_zh"]
    if field in params:
        assert params[field].startswith(str(problem["value"])[:10])


def test_no_token_is_401(client: TestClient) -> None:
    response = client.get("/reports/changes", params={"from": "2025-03-01T00:00:00Z",
                                                      "to": "2025-03-02T00:00:00Z"})
    assert response.status_code == 401


def test_the_app_role_reads_the_counts_but_cannot_write_them(sample_db: Database) -> None:
    with sample_db.app.connect() as conn:
        assert conn.execute(text("SELECT sum(n) FROM twin.change_counts")).scalar()
    for sql in ("INSERT INTO twin.change_counts (period, day, layer, actor, role, operation, "
                "n) VALUES ('day', '2025-03-01', 'streets', 'x', 'admin', 'insert', 1000)",
                "UPDATE twin.change_counts SET n = n + 1",
                "DELETE FROM twin.change_counts",
                "UPDATE twin.change_counts_basis SET zone = 'UTC'",
                "SELECT twin.configure_change_counts('UTC', '{}')",
                "SELECT twin.add_counts(ARRAY[1::bigint])"):
        with sample_db.app.connect() as conn, pytest.raises(DBAPIError) as failed:
            conn.execute(text(sql))
        assert "permission denied" in str(failed.value), sql


def test_the_cli_prints_a_table_and_json(client: TestClient, sample_db: Database) -> None:
    _history(sample_db)
    start, end = RANGES[1]
    table = run_twin("report", "--from", start, "--to", end, "--by", "grid",
                     env=sample_db.env())
    assert table.returncode == 0, table.stderr
    mine, other = _grids(sample_db)
    for expected in ("微网格 micro-grid", "新增", "inserts", "状态变化", "transitions",
                     "合计 total", mine, other, "堵塞 blocked", "畅通 open"):
        assert expected in table.stdout, expected
    as_json = run_twin("report", "--from", start, "--to", end, "--by", "grid", "--json",
                       env=sample_db.env())
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == _report(
        client, login(client, "planner"), **{"from": start, "to": end, "by": "grid"})
    bad = run_twin("report", "--from", end, "--to", start, env=sample_db.env())
    assert bad.returncode == 1 and "must be later than from" in bad.stderr


def test_plain_dates_are_the_subdistricts_days(client: TestClient, sample_db: Database) -> None:
    """``--from 2025-03-01`` is that day's start in TWIN_TIME_ZONE (Asia/Shanghai by default),
    on the command line and over HTTP alike; a period of nothing but loads says so."""
    _history(sample_db)
    dated = run_twin("report", "--from", "2025-03-01", "--to", "2025-03-07", "--json",
                     env=sample_db.env())
    timed = run_twin("report", "--from", "2025-03-01T00:00:00+08:00", "--to",
                     "2025-03-07T00:00:00+08:00", "--json", env=sample_db.env())
    assert dated.returncode == 0, dated.stderr
    assert json.loads(dated.stdout) == json.loads(timed.stdout)
    assert json.loads(dated.stdout)["total"]["changes"] > 0
    assert "note:" not in dated.stderr
    over_http = _report(client, login(client, "planner"), **{"from": "2025-03-01",
                                                             "to": "2025-03-07"})
    assert over_http == json.loads(dated.stdout)
    bad = client.get("/reports/changes", params={"from": "2025-02-30", "to": "2025-03-07"},
                     headers=login(client, "planner"))
    assert bad.status_code == 400 and bad.json()["problems"][0]["field"] == "from"
    # the sample's own load, and nothing else: the report says how to get a history
    today = datetime.now(UTC).date()
    loads = run_twin("report", "--from", str(today - timedelta(days=1)), "--to",
                     str(today + timedelta(days=2)), env=sample_db.env())
    assert loads.returncode == 0, loads.stderr
    assert "twin sample --if-empty --history" in loads.stderr
