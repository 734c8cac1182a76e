"""Cases over HTTP as their users work them: a worker reports, the dispatcher files and
dispatches, the handler handles, someone else verifies; every refusal names its rule."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi.testclient import TestClient

from tests.cases.steps import a_place, photo, through
from tests.conftest import Database, login


def _report(client: TestClient, headers: dict[str, str], lon: float, lat: float,
            **props: Any) -> Any:
    return client.post("/cases", headers=headers, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"category": "E0102", "description": "垃圾堆在路边", **props}})


def _move(client: TestClient, headers: dict[str, str], case: Any, to: str, **body: Any) -> Any:
    etag = f'"case-{case["id"]}-{case["properties"]["version"]}"'
    return client.post(f"/cases/{case['id']}/transitions", json={"to": to, **body},
                       headers=headers | {"If-Match": etag})


def test_the_loop_over_http(client: TestClient, sample_db: Database) -> None:
    lon, lat, grid = a_place(sample_db)
    worker = login(client, f"worker-{grid}")
    dispatcher = login(client, "dispatcher")
    made = _report(client, worker | {"Idempotency-Key": "tablet-1-case-1"}, lon, lat)
    assert made.status_code == 201, made.text
    case = made.json()
    assert made.headers["Location"].endswith(f"/cases/{case['id']}")
    assert made.headers["ETag"] == f'"case-{case["id"]}-1"'
    assert case["properties"].items() >= {"state": "reported", "micro_grid": grid,
                                          "source": "worker",
                                          "reported_by": f"worker-{grid}"}.items()
    again = _report(client, worker | {"Idempotency-Key": "tablet-1-case-1"}, lon, lat)
    assert again.status_code == 201 and again.json()["id"] == case["id"]  # not twice
    assert sample_db.scalar("SELECT count(*) FROM twin.cases") == 1

    # a worker may not file; closing a reported case is no move at all: 409 naming the moves
    assert _move(client, worker, case, "filed").status_code == 403
    illegal = _move(client, dispatcher, case, "closed")
    assert illegal.status_code == 409
    assert illegal.json()["allowed"] == ["filed", "not_filed", "void"]
    assert client.post(f"/cases/{case['id']}/transitions", json={"to": "filed"},
                       headers=dispatcher).status_code == 428
    bad = _move(client, dispatcher, case, "filed", colour="red")
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "colour"

    filed = _move(client, dispatcher, case, "filed")
    assert filed.status_code == 200, filed.text
    case = filed.json()
    assert case["properties"]["assignee"] == f"worker-{grid}"  # proposed by place
    assert case["properties"]["due"]["case"] is not None
    stale = client.post(f"/cases/{case['id']}/transitions", json={"to": "dispatched"},
                        headers=dispatcher | {"If-Match": f'"case-{case["id"]}-1"'})
    assert stale.status_code == 412 and stale.json()["version"] == 2
    case = _move(client, dispatcher, case, "dispatched").json()
    other = login(client, "worker-" + a_place(sample_db, _other_grid(sample_db, grid))[2])
    assert _move(client, other, case, "handled").status_code == 404  # not theirs to see
    case = _move(client, worker, case, "handled", reason="cleared").json()
    assert case["properties"]["handled_by"] == f"worker-{grid}"

    digest = photo(sample_db)
    own = _move(client, worker, case, "closed", photos=[digest],
                position={"lon": lon, "lat": lat, "accuracy_m": 5})
    assert own.status_code == 422
    assert own.json()["problems"][0]["field"] == "actor"
    far = _move(client, dispatcher, case, "closed", photos=[digest],
                position={"lon": lon + 0.002, "lat": lat})
    assert far.status_code == 422 and far.json()["problems"][0]["field"] == "position"
    closed = _move(client, dispatcher, case, "closed", photos=[digest],
                   position={"lon": lon, "lat": lat, "accuracy_m": 4})
    assert closed.status_code == 200, closed.text
    assert closed.json()["properties"]["state"] == "closed"

    events = client.get(f"/cases/{case['id']}/events", headers=worker).json()["events"]
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("report", None, "reported"), ("transition", "reported", "filed"),
        ("transition", "filed", "dispatched"), ("transition", "dispatched", "handled"),
        ("transition", "handled", "closed")]
    assert events[-1]["actor"] == "dispatcher" and events[-1]["photos"] == [digest]
    one = client.get(f"/cases/{case['id']}", headers=worker)
    assert one.headers["ETag"] == f'"case-{case["id"]}-5"'
    assert [s["state"] for s in one.json()["properties"]["stages"]] == [
        "reported", "filed", "dispatched", "handled", "closed"]
    as_then = client.get(f"/cases/{case['id']}", headers=worker,
                         params={"asOf": events[2]["server_time"]}).json()
    assert as_then["properties"]["state"] == "dispatched"


def _other_grid(db: Database, grid: str) -> str:
    return str(db.scalar("SELECT props ->> 'code' FROM twin.features WHERE layer = "
                         "'micro_grids' AND props ->> 'code' <> :g ORDER BY 1 DESC LIMIT 1",
                         g=grid))


def test_a_worker_sees_and_reports_only_in_their_grids(client: TestClient,
                                                       sample_db: Database) -> None:
    lon, lat, grid = a_place(sample_db)
    far_lon, far_lat, far_grid = a_place(sample_db, _other_grid(sample_db, grid))
    worker = login(client, f"worker-{grid}")
    dispatcher = login(client, "dispatcher")
    refused = _report(client, worker, far_lon, far_lat)
    assert refused.status_code == 403
    assert refused.json()["problems"][0]["field"] == "geometry"
    assert _report(client, dispatcher, far_lon, far_lat, source="hotline").status_code == 201
    assert _report(client, worker, lon, lat).status_code == 201
    mine = client.get("/cases", headers=worker).json()
    assert [f["properties"]["micro_grid"] for f in mine["features"]] == [grid]
    everyone = client.get("/cases", headers=login(client, "commander")).json()
    assert everyone["numberMatched"] == 2
    department = client.get("/cases", headers=login(client, "dept-sanitation")).json()
    assert department["numberMatched"] == 0  # nothing sent to the department yet
    outside = _report(client, dispatcher, 0.0, 0.0, source="hotline")
    assert outside.status_code == 422 and "outside" in outside.json()["description"]
    unknown = _report(client, dispatcher, lon, lat, category="E9999", source="hotline")
    assert unknown.status_code == 422
    assert unknown.json()["problems"][0]["field"] == "category"
    assert sample_db.scalar("SELECT count(*) FROM twin.cases") == 2
    assert far_grid != grid


def test_one_late_case_pulls_the_on_time_rate_down_and_its_link_lists_it(
        client: TestClient, sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    digest = photo(sample_db)
    # 暴露垃圾: 0.5h to file and to dispatch, 4h to handle, 1h to verify (working hours)
    on_time = through(sample_db, lon, lat, ["2026-03-02T09:00:00+08:00",
                                            "2026-03-02T09:10:00+08:00",
                                            "2026-03-02T09:20:00+08:00",
                                            "2026-03-02T11:00:00+08:00",
                                            "2026-03-02T14:00:00+08:00"], digest)
    late = through(sample_db, lon, lat, ["2026-03-03T09:00:00+08:00",
                                         "2026-03-03T09:10:00+08:00",
                                         "2026-03-03T09:20:00+08:00",
                                         "2026-03-05T11:00:00+08:00",
                                         "2026-03-05T14:00:00+08:00"], digest)
    commander = login(client, "commander")
    answer = client.get("/cases/kpis", headers=commander,
                        params={"from": "2026-03-01", "to": "2026-04-01", "by": "grid"})
    assert answer.status_code == 200, answer.text
    kpis = answer.json()
    total = kpis["total"]
    assert (total["filed"], total["due"], total["closed"], total["closed_on_time"]) == \
        (2, 2, 2, 1)
    assert total["closure_rate"] == 1.0 and total["on_time_rate"] == 0.5
    assert "closed_on_time / due" in kpis["formulas"]["on_time_rate"]
    assert len(kpis["groups"]) == 1 and kpis["groups"][0]["due"] == 2
    due = client.get(total["links"]["due"], headers=commander).json()
    assert sorted(f["id"] for f in due["features"]) == sorted([on_time, late])
    counted = client.get(total["links"]["closed_on_time"], headers=commander).json()
    assert [f["id"] for f in counted["features"]] == [on_time]
    # a past period reads the same later: the late case reopened now changes nothing then
    assert client.get("/cases/kpis", headers=commander, params={
        "from": "2026-03-01", "to": "2026-04-01"}).json()["total"]["on_time_rate"] == 0.5
    # a past period's answer is kept, until an event dated inside it arrives (a history
    # written by the schema's owner): then it is counted again
    through(sample_db, lon, lat, ["2026-03-04T09:00:00+08:00", "2026-03-04T09:10:00+08:00",
                                  "2026-03-04T09:20:00+08:00", "2026-03-04T10:00:00+08:00",
                                  "2026-03-04T11:00:00+08:00"], digest)
    again = client.get("/cases/kpis", headers=commander, params={
        "from": "2026-03-01", "to": "2026-04-01", "by": "grid"}).json()["total"]
    assert (again["due"], again["closed_on_time"]) == (3, 2)


def test_a_late_case_never_closed_still_counts_against_the_rates(
        client: TestClient, sample_db: Database) -> None:
    from tests.cases.steps import move, report

    lon, lat, _ = a_place(sample_db)
    case_id = report(sample_db, "2026-03-02T09:00:00+08:00", lon, lat)
    move(sample_db, "2026-03-02T09:10:00+08:00", case_id, "filed")
    move(sample_db, "2026-03-02T09:20:00+08:00", case_id, "dispatched")
    commander = login(client, "commander")
    total = client.get("/cases/kpis", headers=commander, params={
        "from": "2026-03-01", "to": "2026-04-01"}).json()["total"]
    assert (total["due"], total["closed"], total["closure_rate"], total["on_time_rate"],
            total["overdue_open"]) == (1, 0, 0.0, 0.0, 1)
    overdue = client.get("/cases", headers=commander, params={"overdue": "true"}).json()
    assert [f["id"] for f in overdue["features"]] == [case_id]
    assert overdue["features"][0]["properties"]["overdue_hours"] > 100


def test_cases_as_csv_and_bad_parameters(client: TestClient, sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    dispatcher = login(client, "dispatcher")
    assert _report(client, dispatcher, lon, lat, source="hotline",
                   description="噪声, \"夜间\"").status_code == 201
    text = client.get("/cases", headers=dispatcher, params={"f": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1 and rows[0]["description"] == '噪声, "夜间"'
    for params in ({"state": "open"}, {"overdue": "maybe"}, {"bbox": "1,2,3"},
                   {"limit": "0"}, {"colour": "red"}, {"kpi": "due"},
                   {"kpi": "speed", "from": "2026-01-01", "to": "2026-02-01"}):
        answer = client.get("/cases", headers=dispatcher, params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["problems"], params
    assert client.get("/cases/kpis", headers=dispatcher, params={
        "from": "2026-02-01", "to": "2026-01-01"}).status_code == 400
    assert client.get("/cases").status_code == 401
    categories = client.get("/cases/categories", headers=dispatcher).json()
    rubbish = next(c for c in categories["categories"] if c["code"] == "E0102")
    assert rubbish["limits"]["handle"] == "4h" and rubbish["name_zh"] == "暴露垃圾"
    assert {"from": "handled", "to": "dispatched"}.items() <= next(
        t for t in categories["transitions"] if t["from"] == "handled"
        and t["to"] == "dispatched").items()


def test_a_tablet_reports_and_moves_cases_in_the_sync_batch(client: TestClient,
                                                            sample_db: Database) -> None:
    lon, lat, grid = a_place(sample_db)
    worker = login(client, f"worker-{grid}")
    dispatcher = login(client, "dispatcher")
    batch = {"edits": [{"edit_id": "t1-1", "device_id": "tablet-1", "layer": "cases",
                        "op": "create", "changes": {
                            "geometry": {"new": {"type": "Point", "coordinates": [lon, lat]}},
                            "category": {"new": "E0102"}, "description": {"new": "满了"}}},
                       {"edit_id": "t1-2", "layer": "cases", "op": "create",
                        "changes": {"category": {"new": "E0102"}}}]}
    results = client.post("/sync", headers=worker, json=batch).json()["results"]
    assert results[0]["status"] == "applied" and results[1]["status"] == "rejected"
    case = results[0]["feature"]
    again = client.post("/sync", headers=worker, json=batch).json()["results"]
    assert again[0]["status"] == "duplicate" and again[0]["feature"]["id"] == case["id"]
    case = _move(client, dispatcher, case, "filed").json()
    case = _move(client, dispatcher, case, "dispatched").json()
    # the tablet saw it dispatched (version 3) and handles it offline; meanwhile the
    # dispatcher sends it back to filed: the tablet's move is held, not applied
    back = _move(client, dispatcher, case, "filed", reason="wrong worker")
    assert back.status_code == 200, back.text
    held = client.post("/sync", headers=worker, json={"edits": [{
        "edit_id": "t1-3", "layer": "cases", "op": "transition", "feature_id": case["id"],
        "base_version": 3, "changes": {"state": {"old": "dispatched", "new": "handled"}},
        "reason": "cleared"}]}).json()["results"][0]
    assert held["status"] == "conflict", held
    assert "moved on" in held["problems"][0]["reason"]
    assert sample_db.scalar("SELECT state FROM twin.cases WHERE id = :id", id=case["id"]) \
        == "filed"
    conflicts = client.get("/conflicts", headers=worker).json()["conflicts"]
    assert [c["id"] for c in conflicts] == [held["conflict"]]
    assert conflicts[0]["layer"] == "cases" and "moved on" in \
        conflicts[0]["problems"][0]["reason"]
    mine = client.post(f"/conflicts/{held['conflict']}/resolve", headers=worker,
                       json={"choose": "mine"})
    assert mine.status_code == 422
    settled = client.post(f"/conflicts/{held['conflict']}/resolve", headers=worker,
                          json={"choose": "server"})
    assert settled.status_code == 200 and settled.json()["status"] == "resolved"


def test_an_extension_is_asked_for_by_the_handler_and_decided_by_the_dispatcher(
        client: TestClient, sample_db: Database) -> None:
    lon, lat, grid = a_place(sample_db)
    worker = login(client, f"worker-{grid}")
    dispatcher = login(client, "dispatcher")
    case = _report(client, worker, lon, lat).json()
    case = _move(client, dispatcher, case, "filed").json()
    case = _move(client, dispatcher, case, "dispatched").json()

    def ask(headers: dict[str, str], body: dict[str, Any]) -> Any:
        etag = f'"case-{case["id"]}-{case["properties"]["version"]}"'
        return client.post(f"/cases/{case['id']}/extension", json=body,
                           headers=headers | {"If-Match": etag})

    assert ask(worker, {"decision": "request", "limit": "2d"}).status_code == 422  # no reason
    assert ask(worker, {"decision": "request", "limit": "soon", "reason": "x"}).json()[
        "problems"][0]["field"] == "extension"
    asked = ask(worker, {"decision": "request", "limit": "2d", "reason": "bins on order"})
    assert asked.status_code == 200, asked.text
    case = asked.json()
    assert case["properties"]["extension"] == "2d"
    assert ask(worker, {"decision": "approve"}).status_code == 403
    due_before = case["properties"]["due"]
    approved = ask(dispatcher, {"decision": "approve", "reason": "ok"})
    assert approved.status_code == 200, approved.text
    props = approved.json()["properties"]
    assert props["extended"] == ["2d"] and props["extension"] is None
    assert props["due"]["stage"] > due_before["stage"]
    assert props["due"]["case"] > due_before["case"]
    case = approved.json()
    nothing = ask(dispatcher, {"decision": "refuse", "reason": "no"})
    assert nothing.status_code == 422  # nothing is waiting
    assert sample_db.scalar("SELECT count(*) FROM twin.case_events WHERE case_id = :id "
                            "AND action LIKE 'extension%'", id=case["id"]) == 2
