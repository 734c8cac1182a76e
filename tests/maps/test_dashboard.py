"""The command centre's board /dashboard in headless Chromium, 16:9 and 32:9: the map in it
signs in, the panels fill with the key figures and follow an edit; nothing leaves 127.0.0.1.
Its coverage panels are the layers that declare a walk, a new one included."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page

import layers as layers_package
from tests.browser import visit
from tests.conftest import DEMO_PASSWORD, bearer, login
from twin.layerspec import SpecError
from twin.registry import all_layers, reread_files

_PANELS = re.compile(r'<script id="twin-coverage" type="application/json">(.*?)</script>', re.S)


def _panels(page: str) -> list[dict[str, Any]]:
    """The coverage panels the served board lists."""
    found = _PANELS.search(page)
    assert found, "the board lists no coverage panels"
    panels: list[dict[str, Any]] = json.loads(found.group(1))
    return panels


def _facilities() -> list[str]:
    """The layers that declare a coverage walk, in registry order."""
    return [name for name, layer in all_layers().items() if layer.coverage_within_m is not None]


def _sign_in(page: Page) -> None:
    """Through the map in the board's frame; the panels fill once coverage has come."""
    frame = page.frame_locator("#map")
    frame.locator("input[name=username]").fill("commander")
    frame.locator("input[name=password]").fill(DEMO_PASSWORD)
    frame.locator("button[type=submit]").click()
    page.wait_for_function(
        "() => document.querySelector('#coverage .figure') !== null", timeout=30_000)


def test_the_board_fills_its_panels_and_follows_an_edit(live_url: str) -> None:
    with visit(f"{live_url}/dashboard", width=1920, height=1080) as seen:
        page = seen.page
        assert "请在地图上登录" in page.inner_text("body")  # signed out: the map asks
        _sign_in(page)
        states = page.inner_text("#states")
        for label in ("消防通道 Fire passages", "堵塞 blocked", "垃圾投放点 Waste drop points"):
            assert label in states
        # a block per declared facility layer, each from the analysis its panel names
        panels = _panels(httpx.get(f"{live_url}/dashboard").text)
        page.wait_for_function(f"() => document.querySelectorAll('#coverage .figure').length"
                               f" === {len(panels)}", timeout=60_000)
        blocks = page.eval_on_selector_all("#coverage .coverage", "bs => bs.map(b => ["
                                           "b.dataset.layer, b.querySelector('h3').textContent,"
                                           " b.querySelector('.figure').firstChild.textContent])")
        assert [b[0] for b in blocks] == [p["layer"] for p in panels] == _facilities()
        asked = {f"{u.path}?{u.query}" for u in map(urlsplit, seen.requests)
                 if u.path == "/analysis/coverage"}
        assert asked == {p["href"] for p in panels}
        auth = {"Authorization": f"Bearer {bearer(live_url, 'commander')}"}
        for (_, heading, shown), panel in zip(blocks, panels, strict=True):
            assert heading.startswith(f"{panel['title_zh']} {panel['title_en']}")
            assert heading.endswith(f"≤ {panel['within_m']:g} m")
            totals = httpx.get(f"{live_url}{panel['href']}", headers=auth).json()["totals"]
            assert shown == f"{100 * totals['covered_households_share']:.1f}%"
        assert "离线最久 longest offline" in page.inner_text("#sync")
        assert "平板待同步编辑 edits waiting on tablets" in page.inner_text("#sync")
        assert "居委会" in page.inner_text("#areas .bars")  # areas by committee name
        before = page.inner_text("#edits .figure")
        seen.screenshot("dashboard-16x9.png")

        # an edit through the API: today's edits move within seconds
        with httpx.Client(base_url=live_url, headers=auth) as http:
            point = http.get("/collections/waste_points/items?limit=1").json()["features"][0]
            item = http.get(f"/collections/waste_points/items/{point['id']}")
            state = "full" if point["properties"]["state"] != "full" else "ok"
            edited = http.patch(f"/collections/waste_points/items/{point['id']}",
                                headers={"If-Match": item.headers["ETag"]},
                                json={"type": "Feature", "properties": {"state": state},
                                      "reason": "大屏测试 board test"})
            assert edited.status_code == 200, edited.text
        page.wait_for_function(
            f"() => document.querySelector('#edits .figure').textContent !== {before!r}",
            timeout=15_000)
        assert page.inner_text("#grids").strip()
        assert seen.errors == []
        assert seen.external_requests() == []

    with visit(f"{live_url}/dashboard?layout=32:9", width=3840, height=1080) as wide:
        assert "layout-32x9" in wide.page.evaluate("document.body.className")
        _sign_in(wide.page)
        wide.page.wait_for_function("() => document.querySelector('#grids .bars') !== null")
        wide.screenshot("dashboard-32x9.png")
        assert wide.errors == [] and wide.external_requests() == []
    assert httpx.get(f"{live_url}/dashboard?layout=4:3").status_code == 400


def test_the_coverage_panels_are_the_layers_that_declare_a_walk(client: TestClient) -> None:
    panels = _panels(client.get("/dashboard").text)
    assert [p["layer"] for p in panels] == _facilities()
    # the sample's two, asking what the board asked before the layers declared it
    hrefs = {p["layer"]: p["href"] for p in panels}
    assert hrefs["waste_points"] == "/analysis/coverage?layer=waste_points&uncovered=false"
    assert hrefs["charging_points"] == ("/analysis/coverage?layer=charging_points&state=safe"
                                        "&uncovered=false")
    headers = login(client, "commander")
    for panel in panels:
        layer = all_layers()[panel["layer"]]
        assert (panel["title_zh"], panel["title_en"], panel["within_m"], panel["state"]) == (
            layer.title_zh, layer.title_en, layer.coverage_within_m, layer.coverage_state)
        answer = client.get(panel["href"], headers=headers)
        assert answer.status_code == 200, answer.text
        asked = answer.json()["parameters"]
        assert (asked["layer"], asked["within_m"], asked["state"]) == (
            layer.name, layer.coverage_within_m, layer.coverage_state)


@contextmanager
def _declared(folder: Path, name: str, state: str) -> Iterator[str]:
    """A facility layer added as an admin adds one: a file of its own among the layers (the
    waste points' declaration renamed, with a walk of 80 m), gone again afterwards."""
    spec = (Path(layers_package.__path__[0]) / "waste_points.toml").read_text(encoding="utf-8")
    spec = re.sub(r'(?m)^name = .*$', f'name = "{name}"', spec)
    spec = re.sub(r'(?m)^title_zh = .*$', 'title_zh = "休息座椅"', spec)
    spec = re.sub(r'(?m)^title_en = .*$', 'title_en = "Benches"', spec)
    spec = re.sub(r'(?m)^coverage_within_m = .*$',
                  f'coverage_within_m = 80.0\ncoverage_state = "{state}"', spec)
    (folder / f"{name}.toml").write_text(spec, encoding="utf-8")
    before = list(layers_package.__path__)
    layers_package.__path__[:] = [*before, str(folder)]
    reread_files()
    try:
        yield name
    finally:
        layers_package.__path__[:] = before
        reread_files()


def test_a_new_facility_layer_shows_on_the_board_with_no_code_change(
        client: TestClient, tmp_path: Path) -> None:
    with _declared(tmp_path, "benches", "ok") as benches:
        panels = _panels(client.get("/dashboard").text)
        assert [p["layer"] for p in panels] == _facilities()
        assert benches in _facilities() and len(panels) >= 3
    new = next(p for p in panels if p["layer"] == benches)
    assert new == {"layer": benches, "title_zh": "休息座椅", "title_en": "Benches",
                   "within_m": 80.0, "state": "ok", "state_label": "正常 ok",
                   "href": f"/analysis/coverage?layer={benches}&state=ok&uncovered=false"}
    assert benches not in _facilities()  # gone with its file


def test_a_coverage_state_the_layer_lacks_is_refused(tmp_path: Path) -> None:
    with _declared(tmp_path, "benches", "shiny"), pytest.raises(SpecError, match="shiny"):
        all_layers()
