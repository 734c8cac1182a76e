"""12345 hotline orders end to end against a real twin: each duty's clock, the steps over
HTTP (accept files the case, a reply waits for its handling, the return visit re-opens or
closes), sending back and extensions with approval, merged repeat calls, the queue, callers
masked for every role but the dispatcher and never in an export or the log, erasure after
retention, the rates, and the city system's export imported twice."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.cases.steps import a_place, act
from tests.conftest import Database, login, run_twin
from twin.hotline.kpis import kpis

ZONE = ZoneInfo("Asia/Shanghai")
NAME, PHONE = "王小明", "13912345678"
ROLES = ("worker-310115010021-03", "planner", "commander", "admin", "dept-sanitation")


def order_body(number: str, lon: float | None = None, lat: float | None = None,
               **extra: Any) -> dict[str, Any]:
    body = {"order_number": number, "received_at": "2026-03-02T09:00:00+08:00",
            "kind": "complaint", "duty": "first", "category": "E0102",
            "words": f"楼下垃圾满了没人管,请回电{PHONE}", "address": "",
            "caller": {"name": NAME, "phone": PHONE}} | extra
    if lon is not None:
        body |= {"lon": lon, "lat": lat}
    return body


def step(client: TestClient, headers: dict[str, str], order_id: int, **body: Any) -> Any:
    etag = client.get(f"/orders/{order_id}", headers=headers).headers["ETag"]
    return client.post(f"/orders/{order_id}/transitions", json=body,
                       headers=headers | {"If-Match": etag})


@pytest.fixture
def desk(client: TestClient) -> dict[str, str]:
    return login(client, "dispatcher")


def test_each_duty_runs_its_own_clock(sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    # the fallback rule gets its own handling limit; the first handler keeps the kind's
    act(sample_db, None, "admin", "admin",
        "UPDATE twin.order_duties SET handle_limit = '10d', accept_limit = '4h' "
        "WHERE code = 'fallback'")
    for number, duty in (("C1", "first"), ("C2", "fallback")):
        act(sample_db, None, "admin", "admin",
            "INSERT INTO twin.orders (order_number, received_at, kind, duty, geom, placed_by) "
            "VALUES (:n, '2026-03-06T16:00:00+08:00', 'complaint', :d, "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'person')",
            n=number, d=duty, lon=lon, lat=lat)
    due = {r[0]: r[1:] for r in sample_db.rows(
        "SELECT duty, accept_due, contact_due, handle_due, "
        "twin.add_work(received_at, '2h'), twin.add_work(received_at, '4h'), "
        "twin.add_work(received_at, '1d'), twin.add_work(received_at, '5d'), "
        "twin.add_work(received_at, '10d') FROM twin.orders")}
    first, fallback = due["first"], due["fallback"]
    assert first[0] == first[3] and first[1] == first[5] and first[2] == first[6]
    assert fallback[0] == fallback[4] and fallback[2] == fallback[7]
    # Friday 16:00 + 2 working hours ends Monday 09:30 (08:30-11:30 working): the calendar counts
    assert first[0].astimezone(ZONE) == datetime(2026, 3, 9, 9, 30, tzinfo=ZONE)
    assert fallback[2] > first[2]


def test_the_hotline_steps_over_http(client: TestClient, sample_db: Database,
                                     desk: dict[str, str]) -> None:
    lon, lat, grid = a_place(sample_db)
    made = client.post("/orders", json=order_body("SH20260302A1", lon, lat), headers=desk)
    assert made.status_code == 201, made.text
    order = made.json()
    oid = order["id"]
    assert order["properties"]["state"] == "received"
    assert order["properties"]["micro_grid"] == grid
    assert order["properties"]["placed_by"] == "caller"
    assert PHONE not in made.text and NAME not in made.text  # masked, words included
    assert order["properties"]["caller"]["phone"] == "139****5678"
    assert [a["to"] for a in order["properties"]["allowed"]] == ["accepted", "returned"]

    # no If-Match: 428; a move the state does not lead to: 409 naming the allowed ones
    assert client.post(f"/orders/{oid}/transitions", json={"to": "accepted"},
                       headers=desk).status_code == 428
    wrong = step(client, desk, oid, to="replied", reason="done")
    assert wrong.status_code == 409 and wrong.json()["allowed"] == ["accepted", "returned"]

    accepted = step(client, desk, oid, to="accepted")
    assert accepted.status_code == 200, accepted.text
    case_id = accepted.json()["properties"]["case"]
    assert case_id is not None
    case = sample_db.one("SELECT state, source, order_number FROM twin.cases WHERE id = :i",
                         i=case_id)
    assert tuple(case) == ("filed", "hotline", "SH20260302A1")
    assert step(client, desk, oid, to="contacted").status_code == 200
    # a reply waits for the case's handling
    early = step(client, desk, oid, to="replied", reason="已处理")
    assert early.status_code == 422
    assert early.json()["problems"][0]["field"] == "case"
    act(sample_db, None, "dispatcher", "dispatcher",
        "UPDATE twin.cases SET state = 'dispatched', department = 'sanitation' "
        "WHERE id = :i", i=case_id)
    act(sample_db, None, "dept", "department",
        "UPDATE twin.cases SET state = 'handled' WHERE id = :i", i=case_id)
    assert step(client, desk, oid, to="replied").status_code == 422  # reply text required
    assert step(client, desk, oid, to="replied", reason="垃圾已清运").status_code == 200
    # the return visit: dissatisfied re-opens with its own limit and a warning
    bad = step(client, desk, oid, to="closed", verdict="dissatisfied")
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "verdict"
    reopened = step(client, desk, oid, to="reopened", verdict="dissatisfied")
    assert reopened.status_code == 200, reopened.text
    p = reopened.json()["properties"]
    assert p["warning"] is True and p["reopened"] == 1 and p["due"]["rehandle"] is not None
    assert sample_db.scalar("SELECT rehandle_due = twin.add_work(changed_at, '3d') "
                            "FROM twin.orders WHERE id = :i", i=oid)
    assert step(client, desk, oid, to="replied", reason="再次清运并加装监控").status_code == 200
    closed = step(client, desk, oid, to="closed", verdict="satisfied")
    assert closed.json()["properties"]["state"] == "closed"
    events = client.get(f"/orders/{oid}/events", headers=desk).json()["events"]
    assert [e["to_state"] for e in events] == [
        "received", "accepted", "contacted", "replied", "reopened", "replied", "closed"]
    # a worker only acts on orders in their grids; a planner never moves one
    planner = login(client, "planner")
    assert client.post(f"/orders/{oid}/transitions", json={"to": "accepted"},
                       headers=planner | {"If-Match": f'"order-{oid}-1"'}).status_code == 412


def test_send_back_and_extension_need_approval(client: TestClient, sample_db: Database,
                                               desk: dict[str, str]) -> None:
    lon, lat, _ = a_place(sample_db)
    oid = client.post("/orders", json=order_body("SB1", lon, lat), headers=desk).json()["id"]
    before = sample_db.scalar("SELECT count(*) FROM twin.order_events")
    no_approver = step(client, desk, oid, to="returned", reason="不属于本街道")
    assert no_approver.status_code == 422
    assert no_approver.json()["problems"][0]["field"] == "approver"
    assert sample_db.scalar("SELECT count(*) FROM twin.order_events") == before  # untouched

    def extend(**body: Any) -> Any:
        etag = client.get(f"/orders/{oid}", headers=desk).headers["ETag"]
        return client.post(f"/orders/{oid}/extension", json=body,
                           headers=desk | {"If-Match": etag})

    assert extend(by="3d", reason="情况复杂").json()["problems"][0]["field"] == "approver"
    old_due = sample_db.scalar("SELECT handle_due FROM twin.orders WHERE id = :i", i=oid)
    ok = extend(by="3d", reason="情况复杂", approver="李主任")
    assert ok.status_code == 200, ok.text
    assert sample_db.scalar("SELECT handle_due = twin.add_work(CAST(:d AS timestamptz), '3d') "
                            "FROM twin.orders WHERE id = :i", i=oid, d=old_due)
    too_far = extend(by="20d", reason="再延", approver="李主任")
    assert too_far.status_code == 422 and too_far.json()["problems"][0]["field"] == "by"
    worker = login(client, "worker-310115010021-03")
    etag = client.get(f"/orders/{oid}", headers=desk).headers["ETag"]
    assert client.post(f"/orders/{oid}/extension", json={"by": "1d"},
                       headers=worker | {"If-Match": etag}).status_code in (403, 404)
    back = step(client, desk, oid, to="returned", reason="不属于本街道", approver="李主任")
    assert back.status_code == 200 and back.json()["properties"]["closed_at"] is not None
    event = client.get(f"/orders/{oid}/events", headers=desk).json()["events"][-1]
    assert (event["reason"], event["approver"]) == ("不属于本街道", "李主任")


def test_repeat_calls_share_one_case_and_each_caller_is_kept(
        client: TestClient, sample_db: Database, desk: dict[str, str]) -> None:
    lon, lat, _ = a_place(sample_db)
    first = client.post("/orders", json=order_body("R1", lon, lat), headers=desk).json()["id"]
    near = order_body("R2", lon + 0.0002, lat, received_at="2026-03-12T10:00:00+08:00",
                      caller={"name": "赵女士", "phone": "13800001111"})
    second = client.post("/orders", json=near, headers=desk).json()
    assert second["properties"]["repeat_of"] == first
    far_off = order_body("R3", lon, lat, received_at="2026-04-20T10:00:00+08:00")
    assert client.post("/orders", json=far_off, headers=desk).json()[
        "properties"]["repeat_of"] is None  # more than 30 days later
    other_kind = order_body("R4", lon, lat, kind="help")
    assert client.post("/orders", json=other_kind, headers=desk).json()[
        "properties"]["repeat_of"] is None
    step(client, desk, first, to="accepted")
    joined = step(client, desk, second["id"], to="accepted").json()["properties"]
    case_of_first = client.get(f"/orders/{first}", headers=desk).json()["properties"]["case"]
    assert joined["case"] == case_of_first
    assert sample_db.scalar("SELECT count(*) FROM twin.cases WHERE source = 'hotline'") == 1
    callers = {client.get(f"/orders/{i}/caller", headers=desk).json()["phone"]
               for i in (first, second["id"])}
    assert callers == {PHONE, "13800001111"}


def test_the_queue_waits_for_a_person(client: TestClient, sample_db: Database,
                                      desk: dict[str, str]) -> None:
    made = client.post("/orders", json=order_body("Q1", address="小区门口那个垃圾桶"),
                       headers=desk).json()
    oid = made["id"]
    assert made["geometry"] is None and made["properties"]["queued"] is True
    queue = client.get("/orders", params={"queued": "true"}, headers=desk).json()
    assert [f["id"] for f in queue["features"]] == [oid]
    refused = step(client, desk, oid, to="accepted")
    assert refused.status_code == 422 and refused.json()["problems"][0]["field"] == "geometry"
    lon, lat, grid = a_place(sample_db)
    etag = client.get(f"/orders/{oid}", headers=desk).headers["ETag"]
    placed = client.post(f"/orders/{oid}/place", json={"lon": lon, "lat": lat},
                         headers=desk | {"If-Match": etag})
    assert placed.status_code == 200, placed.text
    assert placed.json()["properties"]["placed_by"] == "person"
    assert placed.json()["properties"]["micro_grid"] == grid
    assert step(client, desk, oid, to="accepted").status_code == 200
    # from a door plate of the twin's own buildings, placed on that building
    plate, building = sample_db.one(
        "SELECT props ->> 'address', id FROM twin.features WHERE layer = 'buildings' "
        "AND props ->> 'address' IN (SELECT props ->> 'address' FROM twin.features WHERE "
        "layer = 'buildings' GROUP BY 1 HAVING count(*) = 1) ORDER BY id LIMIT 1")
    by_plate = client.post("/orders", json=order_body("Q2", address=f"上海市{plate}3楼"),
                           headers=desk).json()["properties"]
    assert (by_plate["placed_by"], by_plate["placed_feature"]) == ("building", building)


def test_callers_are_masked_for_every_role_but_the_dispatcher(
        client: TestClient, sample_db: Database, desk: dict[str, str]) -> None:
    lon, lat, _ = a_place(sample_db, "310115010021-03")
    oid = client.post("/orders", json=order_body("M1", lon, lat), headers=desk).json()["id"]
    for role in ROLES:
        headers = login(client, role)
        for url in (f"/orders/{oid}", "/orders", "/orders?f=csv", f"/orders/{oid}/events"):
            answer = client.get(url, headers=headers)
            assert PHONE not in answer.text and NAME not in answer.text, (role, url)
        assert client.get(f"/orders/{oid}/caller", headers=headers).status_code == 403, role
    assert sample_db.scalar("SELECT count(*) FROM twin.contact_log WHERE action = 'read'") == 0
    full = client.get(f"/orders/{oid}/caller", params={"purpose": "回访"}, headers=desk)
    assert full.json()["name"] == NAME and full.json()["phone"] == PHONE
    read = sample_db.one("SELECT actor, role, order_id, detail FROM twin.contact_log "
                         "WHERE action = 'read'")
    assert tuple(read) == ("dispatcher", "dispatcher", oid, "回访")
    # the service's own role cannot read the table at all
    with sample_db.app.connect() as conn, pytest.raises(Exception, match="permission denied"):
        conn.execute(text("SELECT phone FROM twin.order_callers"))
    # a changed contact is logged as changed, never with its value
    again = order_body("M1", lon, lat, caller={"name": NAME, "phone": "13700000000"})
    assert client.post("/orders", json=again, headers=desk).status_code == 200
    last = client.get(f"/orders/{oid}/events", headers=desk).json()["events"][-1]
    assert last["action"] == "contact" and last["changed"] == {"caller": "changed"}
    assert "13700000000" not in str(sample_db.rows("SELECT * FROM twin.order_events"))
    log = client.get("/contact-log", headers=login(client, "admin")).json()["entries"]
    assert [e["action"] for e in log][:2] == ["write", "read"]
    assert client.get("/contact-log", headers=desk).status_code == 403


def test_contacts_are_erased_after_retention(sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    for number, at in (("E1", "2025-01-06T10:00:00+08:00"), ("E2", "2026-03-02T10:00:00+08:00")):
        oid = act(sample_db, at, "admin", "admin",
                  "INSERT INTO twin.orders (order_number, received_at, kind, duty, geom, "
                  "placed_by) VALUES (:n, :t, 'consultation', 'first', "
                  "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'caller') RETURNING id",
                  n=number, t=at, lon=lon, lat=lat)
        act(sample_db, at, "admin", "admin", "SELECT twin.set_caller(:i, :n, :p)",
            i=oid, n=NAME, p=PHONE)
        act(sample_db, at, "d", "dispatcher", "UPDATE twin.orders SET state = 'returned' "
            "WHERE id = :i", {"reason": "重复", "order_approver": "主任"}, i=oid)
    done = run_twin("hotline", "erase", "--days", "365", env=sample_db.env())
    assert done.returncode == 0, done.stderr
    assert "erased the contacts of 1 order" in done.stdout
    kept = {r[0]: r[1:] for r in sample_db.rows(
        "SELECT o.order_number, c.name, c.phone, c.erased_at IS NOT NULL FROM twin.orders o "
        "JOIN twin.order_callers c ON c.order_id = o.id")}
    assert kept == {"E1": (None, None, True), "E2": (NAME, PHONE, False)}
    assert sample_db.scalar("SELECT count(*) FROM twin.contact_log WHERE action = 'erase'") == 1
    assert sample_db.scalar("SELECT count(*) FROM twin.order_events e JOIN twin.orders o "
                            "ON o.id = e.order_id WHERE o.order_number = 'E1'") == 2


def test_rates_count_orders_due_and_link_to_them(client: TestClient, sample_db: Database,
                                                 desk: dict[str, str]) -> None:
    lon, lat, grid = a_place(sample_db)
    day = "2026-03-02T09:00:00+08:00"
    ids = [act(sample_db, day, "admin", "admin",
               "INSERT INTO twin.orders (order_number, received_at, kind, duty, geom, "
               "placed_by) VALUES (:n, :t, 'consultation', 'first', "
               "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'caller') RETURNING id",
               n=f"K{i}", t=day, lon=lon + i * 0.001, lat=lat) for i in range(3)]
    # accepted in time (09:30), late (15:00, past 11:00), never
    act(sample_db, "2026-03-02T09:30:00+08:00", "d", "dispatcher",
        "UPDATE twin.orders SET state = 'accepted' WHERE id = :i", i=ids[0])
    act(sample_db, "2026-03-02T15:00:00+08:00", "d", "dispatcher",
        "UPDATE twin.orders SET state = 'accepted' WHERE id = :i", i=ids[1])
    start, end = datetime(2026, 3, 1, tzinfo=ZONE), datetime(2026, 4, 1, tzinfo=ZONE)
    with sample_db.app.connect() as conn:
        got = kpis(conn, start, end, "grid")
    total = got["total"]
    assert (total["received"], total["accept_due"], total["accepted_in_time"]) == (3, 3, 1)
    assert total["accepted_in_time_rate"] == round(1 / 3, 4)
    answer = client.get("/orders/kpis", params={"from": "2026-03-01", "to": "2026-04-01",
                                                "by": "grid"}, headers=desk)
    assert answer.status_code == 200
    groups = {g["key"]: g for g in answer.json()["groups"]}
    assert grid in groups and sum(g["received"] for g in groups.values()) == 3
    link = answer.json()["total"]["links"]["accepted_in_time"]
    listed = client.get(link.replace("http://testserver", ""), headers=desk).json()
    assert [f["id"] for f in listed["features"]] == [ids[0]]
    assert client.get("/orders/kpis", params={"from": "2026-03-01", "to": "2026-04-01",
                                              "by": "colour"}, headers=desk).status_code == 400
    # the same from the command line: the table, and its JSON
    shown = run_twin("hotline", "rates", "--from", "2026-03-01", "--to", "2026-04-01",
                     env=sample_db.env())
    assert shown.returncode == 0, shown.stderr
    assert "33.3%" in shown.stdout and "1/3" in shown.stdout and "及时签收率" in shown.stdout
    as_json = run_twin("hotline", "rates", "--from", "2026-03-01", "--to", "2026-04-01",
                       "--by", "grid", "--json", env=sample_db.env())
    printed = json.loads(as_json.stdout)
    assert {k: v for k, v in printed["total"].items() if k != "links"} == {
        k: v for k, v in total.items() if k != "links"}
    wrong = run_twin("hotline", "rates", "--from", "2026-03-01", "--to", "2026-04-01",
                     "--by", "colour", env=sample_db.env())
    assert wrong.returncode != 0 and "colour" in wrong.stderr and not wrong.stdout


def _export(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_import_twice_changes_nothing(sample_db: Database, tmp_path: Path) -> None:
    plates = [r[0] for r in sample_db.rows(
        "SELECT props ->> 'address' FROM twin.features WHERE layer = 'buildings' "
        "AND props ->> 'address' IS NOT NULL ORDER BY id LIMIT 4")]
    rows = [{"工单编号": f"SH2026{i:04d}", "受理时间": f"2026-03-0{i + 2} 09:1{i}",
             "诉求类型": "投诉" if i % 2 else "求助", "责任规则": "首办", "来源渠道": "电话",
             "案件类别": "E0102", "诉求内容": "垃圾满溢", "诉求地址": f"浦东新区{plate}",
             "来电人": f"张{i}", "联系电话": f"1390000000{i}"} for i, plate in enumerate(plates)]
    rows.append({**rows[0], "工单编号": "SH2026X", "诉求地址": "不知道在哪里"})
    export = _export(tmp_path / "orders.csv", rows)
    first = run_twin("hotline", "import", str(export), env=sample_db.env())
    assert first.returncode == 0, first.stderr
    assert "5 created" in first.stdout and "1 could not be placed" in first.stdout
    events = sample_db.scalar("SELECT count(*) FROM twin.order_events")
    again = run_twin("hotline", "import", str(export), env=sample_db.env())
    assert "0 created, 0 updated, 5 unchanged" in again.stdout, again.stdout
    assert sample_db.scalar("SELECT count(*) FROM twin.order_events") == events
    rows[1]["诉求内容"] = "垃圾满溢,已三天"
    changed = run_twin("hotline", "import", str(_export(export, rows)), env=sample_db.env())
    assert "0 created, 1 updated, 4 unchanged" in changed.stdout, changed.stdout
    assert sample_db.scalar("SELECT count(*) FROM twin.order_events") == events + 1
    # a bad row: nothing imported, the row, field and reason named
    rows.append({**rows[0], "工单编号": "SH2026Y", "诉求类型": "抱怨"})
    bad = run_twin("hotline", "import", str(_export(export, rows)), env=sample_db.env())
    assert bad.returncode == 1
    assert "7" in bad.stderr and "kind" in bad.stderr and "nothing imported" in bad.stderr
    assert sample_db.scalar("SELECT count(*) FROM twin.orders") == 5
    assert sample_db.scalar("SELECT count(*) FROM twin.orders WHERE received_at = "
                            "'2026-03-02 09:10+08'") == 2  # row 2 and its copy


def test_bad_orders_are_refused_and_change_nothing(client: TestClient, sample_db: Database,
                                                   desk: dict[str, str]) -> None:
    for body, field in ((order_body("B1", kind="chat"), "kind"),
                        (order_body("B 2"), "order_number"),
                        (order_body("B3", received_at="2026-03-02T09:00:00"), "received_at"),
                        (order_body("B4", caller={"phone": "call me"}), "caller.phone"),
                        (order_body("B5", received_at=(datetime.now(ZONE) + timedelta(days=2))
                                    .isoformat()), "received_at")):
        answer = client.post("/orders", json=body, headers=desk)
        assert answer.status_code in (400, 422), (field, answer.text)
        assert field in str(answer.json()["problems"]), (field, answer.text)
    assert client.post("/orders", json=order_body("B6"),
                       headers=login(client, "planner")).status_code == 403
    assert sample_db.scalar("SELECT count(*) FROM twin.orders") == 0
    assert client.get("/orders/999999", headers=desk).status_code == 404
    assert client.get("/orders?waiting=never", headers=desk).status_code == 400


def test_an_excel_export_imports_like_its_csv(sample_db: Database, tmp_path: Path) -> None:
    from openpyxl import Workbook

    plate = sample_db.scalar("SELECT props ->> 'address' FROM twin.features WHERE layer = "
                             "'buildings' AND props ->> 'address' IS NOT NULL ORDER BY id LIMIT 1")
    book = Workbook()
    sheet = book.active
    sheet.append(["工单编号", "受理时间", "诉求类型", "责任规则", "诉求内容", "诉求地址",
                  "来电人", "联系电话"])
    sheet.append(["XL1", datetime(2026, 3, 3, 14, 5), "咨询", "兜底", "垃圾分类时间?",
                  plate, "钱先生", "13600001234"])
    book.save(tmp_path / "orders.xlsx")
    done = run_twin("hotline", "import", str(tmp_path / "orders.xlsx"), env=sample_db.env())
    assert done.returncode == 0, done.stderr
    row = sample_db.one("SELECT kind, duty, received_at, placed_by FROM twin.orders")
    assert row[:2] == ("consultation", "fallback")
    assert row[2] == datetime(2026, 3, 3, 14, 5, tzinfo=ZONE)  # local time of the export
    assert row[3] == "building"
