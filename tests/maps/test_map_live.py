"""The command centre's live map /map in headless Chromium: it signs in, draws the twin for
the visible box from the API, shows a feature's last change and history, and follows an edit
made through the API without a reload, asking nothing outside 127.0.0.1."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Page
from sqlalchemy import text

from tests.browser import visit
from tests.conftest import DEMO_PASSWORD, Database, bearer

# The features a layer group holds on the page, as [id, state] pairs.
HELD = """name => {
  const out = [];
  window.twinLiveMap.groups[name].eachLayer(drawn => drawn.eachLayer && drawn.eachLayer(
    f => out.push([f.feature.id, f.feature.properties.state ?? null])));
  return out;
}"""


def _sign_in(page: Page) -> None:
    """As the commander, in the map's own form; waits for the waste points to be drawn."""
    page.fill("input[name=username]", "commander")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => window.twinLiveMap.groups.waste_points.getLayers().length > 0", timeout=20_000)


def test_the_live_map_signs_in_draws_and_follows_an_edit(live_url: str) -> None:
    page_html = httpx.get(f"{live_url}/map")
    assert page_html.status_code == 200
    assert "twinLive(" in page_html.text and '"type": "Feature"' not in page_html.text
    assert len(page_html.content) < 1_000_000
    with visit(f"{live_url}/map") as seen:
        page = seen.page
        _sign_in(page)
        points = page.evaluate(HELD, "waste_points")
        assert len(points) > 10 and all(state for _id, state in points)
        # a point's popup: its last change, then its history from the API
        fid = points[0][0]
        page.evaluate("""fid => { window.twinLiveMap.groups.waste_points.eachLayer(held =>
            held.eachLayer(f => { if (f.feature.id === fid) {
              held.zoomToShowLayer(f, () => f.openPopup()); } })); }""", fid)
        page.wait_for_selector(".twin-popup")
        popup = page.locator(".twin-popup")
        assert "最后修改 Last change" in popup.inner_text()
        page.click(".twin-history")
        page.wait_for_selector(".twin-history-list li")
        assert "v1" in page.inner_text(".twin-history-list")
        # the popup stays open with its history in it
        assert page.evaluate("() => window.twinLiveMap.state.open") == ["waste_points", fid]
        seen.screenshot("live-map.png")
        # a layer toggles off and on in the grouped control
        page.locator(".leaflet-control-layers").get_by_text("道路 Streets").click()
        assert not page.evaluate("() => window.twinLiveMap.map.hasLayer("
                                 "window.twinLiveMap.groups.streets)")
        page.locator(".leaflet-control-layers").get_by_text("道路 Streets").click()
        page.wait_for_function("() => window.twinLiveMap.groups.streets.getLayers().length > 0")
        # with no basemap (the default) the twin's own river is drawn under it, named
        page.wait_for_function("() => window.twinLiveMap.groups.water.getLayers().length > 0")
        assert page.evaluate("""() => { const names = [];
          window.twinLiveMap.groups.water.eachLayer(drawn => drawn.eachLayer(
            f => names.push(f.feature.properties.name)));
          return names; }""") == ["黄浦江"]
        # the dense point layers come in clusters; the heat map of changes is an overlay
        assert page.evaluate("() => window.twinLiveMap.groups.charging_points.getLayers()"
                             "[0] instanceof L.MarkerClusterGroup")
        page.get_by_text("变更热力 Changes, 7 days").click()
        page.wait_for_function("() => window.twinLiveMap.heat._latlngs.length > 0")
        assert page.evaluate("() => window.twinLiveMap.state.heat") > 0
        # the micro-grids coloured by a key figure, with a legend
        page.select_option("select[name=kpi]", "edits_today")
        page.wait_for_selector(".twin-kpi-legend div")
        page.wait_for_function("""() => { let coloured = false;
            window.twinLiveMap.groups.micro_grids.eachLayer(d => d.eachLayer(f => {
              coloured = coloured || ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"]
                .includes(f.options.fillColor); })); return coloured; }""")

        # an edit through the API shows on the open map within 10 s, without a reload
        token = bearer(live_url, "commander")
        auth = {"Authorization": f"Bearer {token}"}
        item = httpx.get(f"{live_url}/collections/waste_points/items/{fid}", headers=auth)
        new_state = "damaged" if item.json()["properties"]["state"] != "damaged" else "ok"
        edited = httpx.patch(f"{live_url}/collections/waste_points/items/{fid}",
                             headers={**auth, "If-Match": item.headers["ETag"]},
                             json={"type": "Feature", "properties": {"state": new_state},
                                   "reason": "指挥中心测试 live map test"})
        assert edited.status_code == 200, edited.text
        started = time.monotonic()
        page.wait_for_function(
            f"() => ({HELD})('waste_points').some(([id, s]) => id === {fid} && s === "
            f"'{new_state}')", timeout=10_000)
        assert time.monotonic() - started < 10
        assert "实时 Live" in page.inner_text(".twin-live")
        seen.screenshot("live-map-after-edit.png")

        # back in time, a second before the edit: the point as it was; then now again
        with httpx.Client(base_url=live_url, headers=auth) as http:
            change = http.get(f"/changes?feature_id={fid}&limit=1").json()["changes"][0]
        moment = datetime.fromisoformat(change["time"]) - timedelta(seconds=1)
        local = moment.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%dT%H:%M:%S")
        page.fill("input[name=as_of]", local)
        page.get_by_text("查看 Show").click()
        old_state = item.json()["properties"]["state"]
        page.wait_for_function(
            f"() => ({HELD})('waste_points').some(([id, s]) => id === {fid} && s === "
            f"'{old_state}')", timeout=10_000)
        assert "历史 As of" in page.inner_text(".twin-live")
        page.get_by_text("现在 Now").click()
        page.wait_for_function(
            f"() => ({HELD})('waste_points').some(([id, s]) => id === {fid} && s === "
            f"'{new_state}')", timeout=10_000)
        assert seen.errors == []
        assert seen.external_requests() == []


def test_the_live_map_page_loads_without_a_token_and_asks_to_sign_in(live_url: str) -> None:
    with visit(f"{live_url}/map") as seen:
        seen.page.wait_for_selector(".twin-live form")
        assert "请登录 sign in" in seen.page.inner_text(".twin-live")
        assert seen.errors == []
        assert seen.external_requests() == []


def test_a_gcj02_basemap_shifts_only_what_is_drawn(live_url: str) -> None:
    from twin.maps.page import render_live_map
    from twin.settings import Settings

    page_html = render_live_map(Settings(basemap="amap"), title="t", bounds=None)
    assert '"gcj02": true' in page_html and "autonavi" in page_html
    assert '"gcj02": false' in httpx.get(f"{live_url}/map").text
    with visit(f"{live_url}/map") as seen:
        shifts = seen.page.evaluate("""() => [[121.51, 31.195], [116.40, 39.91],
                                                [2.35, 48.86]].map(([lon, lat]) => {
            const shown = TWIN_GCJ.toDisplay([lon, lat]);
            const back = TWIN_GCJ.fromDisplay(shown);
            return [shown.distanceTo(L.latLng(lat, lon)), back.distanceTo(L.latLng(lat, lon))];
        })""")
    (shanghai, shanghai_back), (beijing, beijing_back), (paris, _paris_back) = shifts
    assert 300 < shanghai < 800 and 300 < beijing < 800  # the datum's few hundred metres
    assert shanghai_back < 0.01 and beijing_back < 0.01  # and back to WGS-84 to the cm
    assert paris == 0  # outside China nothing moves
    assert seen.errors == []


def test_the_grid_choropleth_has_honest_classes_and_points_say_what_they_are(
        live_url: str, sample_db: Database) -> None:
    """Most grids hold no full waste point: zero is a class of its own, the classes rise
    without a gap or a repeat, and grids take more than one colour. An unnamed point's
    tooltip names its layer and id."""
    with sample_db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context('commander', 'commander', 'test', 'full')"))
        grids = [code for (code,) in conn.execute(text(
            "SELECT DISTINCT grid_code FROM twin.features WHERE layer = 'waste_points' "
            "AND grid_code IS NOT NULL ORDER BY grid_code LIMIT 9"))]
        conn.execute(text("UPDATE twin.features SET props = props || '{\"state\": \"ok\"}' "
                          "WHERE layer = 'waste_points' AND props->>'state' = 'full'"))
        full = conn.execute(text(
            "UPDATE twin.features SET props = props || '{\"state\": \"full\"}' "
            "WHERE layer = 'waste_points' AND grid_code = ANY(:g) RETURNING grid_code"),
            {"g": grids}).all()
    per_grid = Counter(code for (code,) in full)
    assert len(per_grid) == 9 and len(set(per_grid.values())) > 1
    with visit(f"{live_url}/map") as seen:
        page = seen.page
        _sign_in(page)
        # the classing itself, on distributions that broke it
        classes = page.evaluate("""() => [[0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0],
            [5, 5, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3, 0, 0, 7, 0, 0, 0, 0, 1]]
            .map(window.twinLiveMap.classes)""")
        assert classes == [[[0, 0], [1, 1]], [[0, 0]], [[5, 5]],
                           [[0, 0], [1, 2], [3, 5], [6, 8], [9, 11]],
                           [[0, 0], [1, 2], [3, 6], [7, 7]]]
        page.select_option("select[name=kpi]", "waste_points.full")
        page.wait_for_selector(".twin-kpi-legend div")
        rows = page.locator(".twin-kpi-legend div").all_inner_texts()
        grids = len(page.evaluate("() => Object.keys(window.twinLiveMap.state.kpis)"))
        assert rows[0] == f"0 ({grids - 9})"
        lows = [int(row.split()[0]) for row in rows]
        assert lows == sorted(set(lows)) and len(rows) >= 2
        assert sum(int(row.rsplit("(", 1)[1].rstrip(")")) for row in rows) == grids
        assert not any("-1" in row or "≥" in row for row in rows)
        page.wait_for_function("""() => { const colours = new Set();
            window.twinLiveMap.groups.micro_grids.eachLayer(d => d.eachLayer(
              f => colours.add(f.options.fillColor))); return colours.size >= 2; }""")
        seen.screenshot("live-map-choropleth.png")
        # an unnamed point's tooltip: the layer's title and the id, never "null"
        fid = page.evaluate("""() => { let found = null;
            window.twinLiveMap.groups.waste_points.eachLayer(held => held.eachLayer(f => {
              if (found === null && !f.feature.properties.name) {
                found = f.feature.id;
                held.zoomToShowLayer(f, () => f.openTooltip()); } }));
            return found; }""")
        assert fid is not None
        page.wait_for_selector(".leaflet-tooltip")
        tip = page.inner_text(".leaflet-tooltip")
        assert tip.startswith(f"垃圾投放点 Waste drop points #{fid} · ") and "null" not in tip
        assert seen.errors == []
