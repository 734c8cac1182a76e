"""12345 hotline orders as the command centre sees them. ``GET /kpis/hotline``: the board's
figures (received today, waiting for first contact, the queue not placed, open warnings, late)
are the orders counted in SQL, each link lists exactly those orders, and the rates by
department are the period's orders counted in SQL. In headless Chromium over real HTTP: the
board's hotline panel shows the numbers, the live map draws the placed open orders by state,
the warning ringed and the late ones marked, with no caller anywhere; nothing leaves
127.0.0.1."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from tests.browser import visit
from tests.conftest import DEMO_PASSWORD, ROOT, Database, bearer, login
from twin.hotline.loop import Order, receive_orders
from twin.hotline.rules import hotline_rules_loaded, load_hotline_rules
from twin.users import User

ZONE = ZoneInfo("Asia/Shanghai")
CALLER = ("测试来电人", "13812345678")
MASKED = ("测****", "138****5678")  # as twin.callers_masked gives them


def _at(conn: Connection, moment: datetime, reason: str | None = None) -> None:
    """The dispatcher acts at ``moment`` (the owner may date what it writes: twin.clock)."""
    conn.execute(text("SELECT twin.set_context('dispatcher', 'dispatcher', 'test', :r)"),
                 {"r": reason})
    conn.execute(text("SELECT set_config('twin.clock', :t, true)"), {"t": moment.isoformat()})


def _move(conn: Connection, table: str, row_id: int, moment: datetime, to: str,
          reason: str | None = None, verdict: str | None = None) -> None:
    _at(conn, moment, reason)
    extra = ", verdict = :verdict" if verdict else ""
    conn.execute(text(f"UPDATE twin.{table} SET state = :to{extra} WHERE id = :id"),
                 {"to": to, "id": row_id, "verdict": verdict})


def _orders(db: Database) -> dict[str, int]:
    """Orders of a subdistrict's day, at points inside four micro-grids:
    - ``today``: received today, placed, waiting to be accepted (on time);
    - ``queued``: received today with an address the twin cannot place (the queue);
    - ``waiting``: received 20 days ago, accepted in time (its case filed), never contacted;
    - ``warned``: received 20 days ago, accepted, contacted and replied in time, the case
      handled, then the caller dissatisfied (re-opened: a warning), its re-handling late;
    - ``slow``: received 20 days ago, accepted two days late, never contacted."""
    now = datetime.now(ZONE)
    day = datetime.combine(now.date(), datetime.min.time(), ZONE)
    fresh = max(now - timedelta(minutes=10), day)
    base = datetime.combine(now.date() - timedelta(days=20), datetime.min.time(), ZONE) \
        + timedelta(hours=10)
    admin = User(0, "t", "admin", ())
    with db.admin.begin() as conn:
        if not hotline_rules_loaded(conn):
            load_hotline_rules(conn, ROOT / "data" / "hotline_rules.toml")
        points = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p, "
            "props->>'code' AS code FROM twin.features WHERE layer = 'micro_grids') g "
            "ORDER BY code LIMIT 4 OFFSET 10")).all()

        def order(number: str, at: datetime, where: int | None, category: str | None = None,
                  address: str = "") -> Order:
            lon, lat = points[where] if where is not None else (None, None)
            return Order(number, at, "help", "first", category=category, address=address,
                         words="测试 test", caller_name=CALLER[0],
                         caller_phone=CALLER[1], lon=lon, lat=lat)

        made = receive_orders(conn, admin, [
            order("T-TODAY", fresh, 0),
            order("T-QUEUED", fresh, None, address="无此路1号 No Such Road 1"),
            order("T-WAITING", base, 1, "E0102"), order("T-WARNED", base, 2, "E0102"),
            order("T-SLOW", base, 3, "E0102")])
    ids = dict(zip(("today", "queued", "waiting", "warned", "slow"), (r.id for r in made),
                   strict=True))
    hour = timedelta(hours=1)
    with db.admin.begin() as conn:
        _move(conn, "orders", ids["waiting"], base + hour, "accepted")
        _move(conn, "orders", ids["slow"], base + timedelta(days=2), "accepted")
        _move(conn, "orders", ids["warned"], base + hour, "accepted")
        case = conn.execute(text("SELECT case_id FROM twin.orders WHERE id = :id"),
                            {"id": ids["warned"]}).scalar_one()
        _move(conn, "cases", case, base + 2 * hour, "dispatched")
        _move(conn, "orders", ids["warned"], base + 2 * hour, "contacted")
        _move(conn, "cases", case, base + 3 * hour, "handled")
        _move(conn, "orders", ids["warned"], base + timedelta(days=1), "replied", "已清理 cleaned")
        _move(conn, "orders", ids["warned"], base + timedelta(days=2), "reopened",
              verdict="dissatisfied")
    return ids


def _local(href: str) -> str:
    parts = urlsplit(href)
    return f"{parts.path}?{parts.query}"


def _expected(db: Database, ids: list[int] | None = None, grid: str | None = None
              ) -> dict[str, int]:
    """The board's figures, counted here in SQL as the brief states them: of every order, or
    of the orders ``ids``, or of one micro-grid's."""
    now = datetime.now(ZONE)
    day = datetime.combine(now.date(), datetime.min.time(), ZONE)
    row = db.one("""
        SELECT count(*) FILTER (WHERE received_at >= :day AND received_at < :next)
                   AS received_today,
               count(*) FILTER (WHERE state = 'accepted') AS waiting_contact,
               count(*) FILTER (WHERE geom IS NULL AND (category IS NOT NULL OR address <> '')
                   AND state NOT IN ('closed', 'returned')) AS queued,
               count(*) FILTER (WHERE warning AND state <> 'closed') AS warnings,
               count(*) FILTER (WHERE (state = 'received' AND accept_due < now())
                   OR (state = 'accepted' AND (contact_due < now() OR handle_due < now()))
                   OR (state = 'contacted' AND handle_due < now())
                   OR (state = 'reopened' AND rehandle_due < now())
                   OR (state = 'replied' AND visit_due < now())) AS late
          FROM twin.orders
         WHERE (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids))
           AND (CAST(:grid AS text) IS NULL OR grid_code = :grid)""",
                 day=day, next=day + timedelta(days=1), ids=ids, grid=grid)
    return dict(row._mapping)


def test_the_boards_hotline_figures_are_the_orders_counted(client: TestClient,
                                                          sample_db: Database) -> None:
    ids = _orders(sample_db)
    expected = _expected(sample_db)  # all the twin's orders (the sample's own, if it has any)
    assert _expected(sample_db, list(ids.values())) == {
        "received_today": 2, "waiting_contact": 2, "queued": 1, "warnings": 1, "late": 3}
    auth = login(client, "commander")
    today = datetime.now(ZONE).date()
    period = {"from": (today - timedelta(days=40)).isoformat(),
              "to": (today + timedelta(days=1)).isoformat()}
    answer = client.get("/kpis/hotline", params=period, headers=auth)
    assert answer.status_code == 200, answer.text
    board = answer.json()
    assert board["total"] == expected
    # each figure's link lists exactly the orders it counts
    for name, href in board["links"].items():
        listed = client.get(_local(href), headers=auth)
        assert listed.status_code == 200, (name, listed.text)
        assert listed.json()["numberMatched"] == expected[name], name
    assert board["newest_event"] == sample_db.scalar("SELECT max(id) FROM twin.order_events")
    # the period runs to now at most: a deadline still ahead is not missed yet
    assert board["period"]["name"] is None
    assert datetime.fromisoformat(board["period"]["to"]) <= datetime.now(ZONE)

    # the rates by department: the period's orders counted here
    departments = {r[0] for r in sample_db.rows(
        "SELECT department FROM twin.orders WHERE id = ANY(:ids)",
        ids=[ids["waiting"], ids["warned"], ids["slow"]])}
    assert len(departments) == 1 and None not in departments
    dept = departments.pop()
    start = datetime.fromisoformat(board["period"]["from"])
    end = datetime.fromisoformat(board["period"]["to"])
    # a deadline in the period makes an order due, unless it was sent back (退单) before it
    due = {step: f"{step}_due >= :s AND {step}_due < :e AND NOT (state = 'returned' "
                 f"AND closed_at <= {step}_due)" for step in ("accept", "contact", "handle")}
    visits = ("FROM twin.order_events e JOIN twin.orders v ON v.id = e.order_id "
              "AND v.department = :d WHERE e.from_state = 'replied' AND e.action = 'transition' "
              "AND e.server_time >= :s AND e.server_time < :e "
              "AND (CAST(:ids AS bigint[]) IS NULL OR e.order_id = ANY(:ids))")
    counts = f"""
        SELECT count(*) FILTER (WHERE {due['accept']}) AS accept_due,
               count(*) FILTER (WHERE {due['accept']} AND accepted_at <= accept_due)
                   AS accepted_in_time,
               count(*) FILTER (WHERE {due['contact']}) AS contact_due,
               count(*) FILTER (WHERE {due['contact']} AND contacted_at <= contact_due)
                   AS contacted_in_time,
               count(*) FILTER (WHERE {due['handle']}) AS handle_due,
               count(*) FILTER (WHERE {due['handle']} AND replied_at <= handle_due)
                   AS handled_on_time,
               (SELECT count(DISTINCT e.order_id) {visits}) AS visited,
               (SELECT count(*) FROM (SELECT DISTINCT ON (e.order_id) e.verdict {visits}
                                      ORDER BY e.order_id, e.version DESC) last
                 WHERE last.verdict IN ('satisfied', 'basic')) AS satisfied,
               (SELECT count(DISTINCT e.order_id) {visits} AND e.to_state = 'reopened')
                   AS reopened
          FROM twin.orders WHERE department = :d
           AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids))"""
    counted = sample_db.one(counts, s=start, e=end, d=dept, ids=None)._mapping
    group = next(g for g in board["rates"]["groups"] if g["key"] == dept)
    assert {k: group[k] for k in counted} == dict(counted)
    for rate, (numerator, denominator) in {
            "accepted_in_time_rate": ("accepted_in_time", "accept_due"),
            "contacted_in_time_rate": ("contacted_in_time", "contact_due"),
            "on_time_rate": ("handled_on_time", "handle_due"),
            "satisfaction_rate": ("satisfied", "visited"),
            "reopen_rate": ("reopened", "visited")}.items():
        assert group[rate] == round(counted[numerator] / counted[denominator], 4), rate
    # of these, the test's own orders: as their story says
    ours = sample_db.one(counts, s=start, e=end, d=dept, ids=list(ids.values()))._mapping
    assert dict(ours) == {"accept_due": 3, "accepted_in_time": 2, "contact_due": 3,
                          "contacted_in_time": 1, "handle_due": 3, "handled_on_time": 1,
                          "visited": 1, "satisfied": 0, "reopened": 1}
    assert [r["name"] for r in board["board_rates"]] == [
        "accepted_in_time_rate", "contacted_in_time_rate", "on_time_rate",
        "satisfaction_rate", "reopen_rate"]
    assert board["board_rates"][0]["zh"] == "及时签收率"
    assert board["departments"][dept]["name_zh"]
    # a rate's figure opens the orders it counts
    on_time = client.get(_local(group["links"]["accepted_in_time"]), headers=auth).json()
    assert on_time["numberMatched"] == group["accepted_in_time"]
    assert {ids["waiting"], ids["warned"]} <= {f["id"] for f in on_time["features"]}
    assert ids["slow"] not in {f["id"] for f in on_time["features"]}

    # by default the current month of the subdistrict's calendar, up to now; or the half year
    month = client.get("/kpis/hotline", headers=auth).json()["period"]
    assert month["name"] == "month"
    assert month["from"] == datetime.combine(date(today.year, today.month, 1),
                                             datetime.min.time(), ZONE).isoformat()
    half = client.get("/kpis/hotline?period=half_year", headers=auth).json()["period"]
    assert half["from"][:10] == f"{today.year}-{'01' if today.month <= 6 else '07'}-01"
    for bad in ("period=week", "from=2026-01-01", "period=month&from=2026-01-01&to=2026-02-01",
                "by=grid"):
        refused = client.get(f"/kpis/hotline?{bad}", headers=auth)
        assert refused.status_code == 400, (bad, refused.text)
    assert client.get("/kpis/hotline").status_code == 401

    # a worker counts only the orders of their own grids
    grid = sample_db.scalar("SELECT grid_code FROM twin.orders WHERE id = :id",
                            id=ids["warned"])
    mine = client.get("/kpis/hotline", headers=login(client, f"worker-{grid}")).json()
    assert mine["total"] == _expected(sample_db, grid=grid)
    assert mine["total"] != expected and mine["total"]["warnings"] >= 1


def _markers(page: Any) -> dict[int, list[Any]]:
    return {m[0]: m[1:] for m in page.evaluate(
        "() => window.twinLiveMap.orders.getLayers().map(m => [m.feature.id, "
        "m.feature.properties.state, Boolean(m.options.warning), Boolean(m.options.late), "
        "'caller' in m.feature.properties || 'words' in m.feature.properties])")}


def test_orders_on_the_board_and_the_live_map(live_url: str, sample_db: Database) -> None:
    ids = _orders(sample_db)
    case = sample_db.scalar("SELECT case_id FROM twin.orders WHERE id = :id", id=ids["warned"])
    number = sample_db.scalar("SELECT order_number FROM twin.orders WHERE id = :id",
                              id=ids["warned"])

    # ---- the board: one page load; the map in its frame signs in -----------------------------
    with visit(f"{live_url}/dashboard", width=1920, height=1080) as seen:
        page = seen.page
        frame = page.frame_locator("#map")
        frame.locator("input[name=username]").fill("commander")
        frame.locator("input[name=password]").fill(DEMO_PASSWORD)
        frame.locator("button[type=submit]").click()
        page.wait_for_function("() => document.querySelector('#hotline table.rates') !== null",
                               timeout=30_000)
        shown = {name: page.inner_text(f"#hotline [data-figure={name}] .figure")
                 for name in ("received_today", "waiting_contact", "queued", "warnings", "late")}
        assert shown == {name: str(n) for name, n in _expected(sample_db).items()}
        assert all(int(n) > 0 for n in shown.values())
        panel = page.inner_text("#hotline")
        for label in ("热线工单 Hotline orders", "待先行联系", "待定位", "不满意预警", "及时签收率",
                      "先行联系及时率", "按期办结率", "回访满意率", "重办率", "本月 this month"):
            assert label in panel, label
        # the month's rates: the department's row as the API gives it
        auth = {"Authorization": f"Bearer {bearer(live_url, 'commander')}"}
        board = httpx.get(f"{live_url}/kpis/hotline", headers=auth).json()
        rows = {"": board["rates"]["total"]} | {
            g["key"]: g for g in board["rates"]["groups"]
            if g["key"] and any(g[r["denominator"]] for r in board["board_rates"])}
        for key, g in rows.items():
            for r in board["board_rates"]:
                cell = page.inner_text(f"#hotline tr[data-key='{key}'] td[data-rate={r['name']}]")
                rate = g[r["name"]]
                assert cell == ("—" if rate is None else f"{100 * rate:.1f}%"), (key, r)
        seen.screenshot("hotline-board.png")

        # a figure opens the orders it counts; the queue's order has no place on the map
        page.click("#hotline [data-figure=queued] button")
        page.wait_for_selector("#case-list li[data-order-id]")
        listed = page.locator("#case-list li").evaluate_all(
            "items => items.map(li => Number(li.dataset.orderId))")
        assert ids["queued"] in listed and ids["today"] not in listed
        assert "待定位 not placed" in page.inner_text("#case-list")
        page.click("#case-list .close")

        # ---- the live map, in the board's frame -----------------------------------------------
        map_page = page.query_selector("#map").content_frame()  # type: ignore[union-attr]
        assert map_page is not None
        map_page.wait_for_function(
            "() => window.twinLiveMap && window.twinLiveMap.orders.getLayers().length >= 4",
            timeout=20_000)
        drawn = _markers(map_page)
        assert {i: drawn.get(i) for i in ids.values()} == {
            ids["today"]: ["received", False, False, False], ids["queued"]: None,  # no place
            ids["waiting"]: ["accepted", False, True, False],
            ids["warned"]: ["reopened", True, True, False],
            ids["slow"]: ["accepted", False, True, False]}
        assert not any(m[3] for m in drawn.values())  # no caller, nor their words, kept
        legend = map_page.inner_text(".twin-legend")
        assert "热线工单 Hotline orders" in legend and "不满意预警 warning" in legend
        # the board's warning list opens the order on the map, its popup open
        page.click("#hotline [data-figure=warnings] button")
        page.click(f"#case-list li[data-order-id='{ids['warned']}']")
        popup = map_page.locator(f".twin-order-popup[data-order-id='{ids['warned']}']")
        popup.wait_for(timeout=10_000)
        said = popup.inner_text()
        for words in (f"工单 Order {number}", "求助", "首办", "重办 reopened", "超时 late",
                      "不满意预警 warning", "重办时限 Re-handle by", "签收时限 Accept by",
                      f"案件 Case #{case}"):
            assert words in said, words
        assert popup.locator("a.twin-order-case").get_attribute("href") == f"/cases/{case}"
        assert map_page.locator(".twin-order.warning.late").count() == 1  # ringed and marked
        seen.screenshot("hotline-map-popup.png")
        # no caller, masked or not, anywhere on either page
        for text_of in (page.content(), map_page.content()):
            assert all(c not in text_of for c in (*CALLER, *MASKED))
        assert seen.errors == []
        assert seen.external_requests() == []
