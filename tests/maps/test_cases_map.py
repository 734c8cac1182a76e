"""Cases (一网统管) as the command centre sees them, in headless Chromium over real HTTP: on the
live map by state with the overdue one ringed, its timeline in its popup, a new case drawn
without a reload, the grid choropleth by case figures; on the board the day's figures, the
overdue list and the rates, each figure opening the list of the cases it counts. Nothing
leaves 127.0.0.1."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text

from tests.browser import visit
from tests.conftest import DEMO_PASSWORD, Database, bearer

REASON = "超期测试 overdue test"


def _report(http: httpx.Client, point: dict[str, Any], file: bool) -> int:
    """A case at a waste point, reported and (``file``) filed by the dispatcher over HTTP."""
    made = http.post("/cases", json={
        "type": "Feature", "geometry": point["geometry"],
        "properties": {"category": "E0102", "source": "patrol", "description": "暴露垃圾 test",
                       "feature": {"layer": "waste_points", "id": point["id"]}}})
    assert made.status_code == 201, made.text
    case_id = int(made.json()["id"])
    if file:
        filed = http.post(f"/cases/{case_id}/transitions", json={"to": "filed"},
                          headers={"If-Match": made.headers["ETag"]})
        assert filed.status_code == 200, filed.text
        assert filed.headers["ETag"] == f'"case-{case_id}-2"'
    return case_id


def _overdue_case(db: Database, point: dict[str, Any]) -> int:
    """A case reported and filed two weeks ago (the owner dates the actions with twin.clock):
    its deadlines long past, it is overdue now."""
    zone = ZoneInfo("Asia/Shanghai")
    then = (datetime.now(zone) - timedelta(days=14)).replace(hour=9, minute=30, second=0,
                                                              microsecond=0)
    lon, lat = point["geometry"]["coordinates"]
    with db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context('dispatcher', 'dispatcher', 'test', :r)"),
                     {"r": REASON})
        conn.execute(text("SELECT set_config('twin.clock', :t, true)"), {"t": then.isoformat()})
        case_id = conn.execute(text(
            "INSERT INTO twin.cases (geom, category, source, description) VALUES "
            "(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 'E0102', 'hotline', '超期 overdue') "
            "RETURNING id"), {"x": lon, "y": lat}).scalar_one()
        conn.execute(text("UPDATE twin.cases SET state = 'filed' WHERE id = :id"),
                     {"id": case_id})
    return int(case_id)


def test_cases_on_the_live_map_and_the_board(live_url: str, sample_db: Database) -> None:
    auth = {"Authorization": f"Bearer {bearer(live_url, 'dispatcher')}"}
    with httpx.Client(base_url=live_url, headers=auth, timeout=30) as http:
        points = http.get("/collections/waste_points/items?limit=200").json()["features"]
        spread = points[::40][:5]  # apart, in different grids
        filed = [_report(http, spread[0], True), _report(http, spread[1], True)]
        reported = _report(http, spread[2], False)
        late = _overdue_case(sample_db, spread[3])
        assert http.get(f"/cases/{late}").json()["properties"]["overdue"] is True
        late_grid = http.get(f"/cases/{late}").json()["properties"]["micro_grid"]

        # ---- the live map ------------------------------------------------------------------
        with visit(f"{live_url}/map") as seen:
            page = seen.page
            page.fill("input[name=username]", "commander")
            page.fill("input[name=password]", DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_function(
                "() => window.twinLiveMap.cases.getLayers().length >= 4", timeout=20_000)
            drawn = {m[0]: m[1:] for m in page.evaluate(
                "() => window.twinLiveMap.cases.getLayers().map(m => [m.feature.id, "
                "m.feature.properties.state, Boolean(m.options.overdue)])")}
            assert drawn == {filed[0]: ["filed", False], filed[1]: ["filed", False],
                             reported: ["reported", False], late: ["filed", True]}
            assert "超期 overdue" in page.inner_text(".twin-legend")

            # the overdue case: ringed and bigger than the others; its popup's timeline
            assert page.evaluate(f"() => window.twinLiveMap.showCase({late})")
            page.wait_for_selector(".twin-case-timeline li[data-action=transition]")
            ring = page.locator(".twin-case.overdue")
            assert ring.count() == 1 and ring.bounding_box()["width"] >= 20  # type: ignore[index]
            popup = page.inner_text(".twin-case-popup")
            assert f"#{late} 暴露垃圾" in popup and "超期 overdue" in popup
            steps = page.locator(".twin-case-timeline li").all_inner_texts()
            assert len(steps) == 2
            assert "dispatcher" in steps[0] and "上报 reported" in steps[0]
            assert "立案 file" in steps[1] and "上报 reported → 立案 filed" in steps[1]
            assert REASON in steps[1]
            seen.screenshot("cases-map-popup.png")

            # a case reported now shows without a reload
            fresh = _report(http, spread[4], False)
            page.wait_for_function(
                f"() => window.twinLiveMap.cases.getLayers().some(m => m.feature.id === {fresh})",
                timeout=12_000)

            # the micro-grids by a case figure: the overdue case's grid alone in class 1
            page.select_option("select[name=kpi]", "cases.overdue")
            page.wait_for_selector(".twin-kpi-legend div")
            rows = page.locator(".twin-kpi-legend div").all_inner_texts()
            grids = len(page.evaluate("() => Object.keys(window.twinLiveMap.state.kpis)"))
            assert rows == [f"0 ({grids - 1})", "1 (1)"]
            assert page.evaluate("() => window.twinLiveMap.state.kpis")[late_grid]["cases"][
                "overdue"] == 1
            page.select_option("select[name=kpi]", "rate.on_time_rate")
            page.wait_for_function("() => document.querySelector('.twin-kpi-legend')"
                                   ".innerText.includes('< 60% (1)')")
            assert seen.errors == []
            assert seen.external_requests() == []

    # ---- the board -------------------------------------------------------------------------
    with visit(f"{live_url}/dashboard", width=1920, height=1080) as seen:
        page = seen.page
        frame = page.frame_locator("#map")
        frame.locator("input[name=username]").fill("commander")
        frame.locator("input[name=password]").fill(DEMO_PASSWORD)
        frame.locator("button[type=submit]").click()
        page.wait_for_function("() => document.querySelector('#rates table') !== null",
                               timeout=30_000)
        figure = {name: page.inner_text(f"#cases [data-figure={name}] .figure")
                  for name in ("filed_today", "closed_today", "open", "overdue")}
        assert figure == {"filed_today": "2", "closed_today": "0", "open": "5", "overdue": "1"}
        overdue = page.locator("#cases .overdue-list .row").first
        assert overdue.get_attribute("data-case-id") == str(late)
        assert "超期" in overdue.inner_text() and " h" in overdue.inner_text()
        rates = page.inner_text("#rates")
        assert "环卫所" in rates and "0.0%" in rates  # sanitation: one due, none closed
        seen.screenshot("cases-board.png")

        # a figure opens the list of its cases: filed today, then the department's due
        page.click("#cases [data-figure=filed_today] button")
        page.wait_for_selector("#case-list li")
        listed = {int(x) for x in page.locator("#case-list li").evaluate_all(
            "items => items.map(li => li.dataset.caseId)")}
        assert listed == set(filed)
        page.click("#case-list .close")
        page.click("#rates table:nth-of-type(2) tr[data-key=sanitation] td:nth-child(2) button")
        page.wait_for_function("() => !document.getElementById('case-list').hidden && "
                               "document.querySelector('#case-list li') !== null")
        assert page.locator("#case-list li").get_attribute("data-case-id") == str(late)
        # and a case in a list shows on the board's map, its popup open
        page.click("#case-list li")
        frame.locator(f".twin-case-popup[data-case-id='{late}']").wait_for(timeout=10_000)
        assert seen.errors == []
        assert seen.external_requests() == []
