"""The command centre's board /dashboard in headless Chromium, 16:9 and 32:9: the map in it
signs in, the panels fill with the key figures and follow an edit; nothing leaves 127.0.0.1."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page

from tests.browser import visit
from tests.conftest import DEMO_PASSWORD, bearer


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
        assert "%" in page.inner_text("#coverage")
        assert "离线最久 longest offline" in page.inner_text("#sync")
        assert "平板待同步编辑 edits waiting on tablets" in page.inner_text("#sync")
        assert "居委会" in page.inner_text("#areas .bars")  # areas by committee name
        before = page.inner_text("#edits .figure")
        seen.screenshot("dashboard-16x9.png")

        # an edit through the API: today's edits move within seconds
        auth = {"Authorization": f"Bearer {bearer(live_url, 'commander')}"}
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
