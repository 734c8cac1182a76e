"""The public pages in Chromium, as a new user meets them: the API documentation works with no
internet, and the landing page's links that need a token lead to a sign-in, not a 401 body."""

from __future__ import annotations

import httpx

from tests.browser import visit
from tests.conftest import DEMO_PASSWORD


def test_the_api_documentation_draws_offline(live_url: str) -> None:
    page_html = httpx.get(f"{live_url}/api.html").text
    assert "cdn." not in page_html and "https://" not in page_html
    with visit(f"{live_url}/api.html") as seen:
        seen.page.wait_for_selector(".opblock", timeout=20_000)
        assert seen.page.locator(".opblock").count() > 30
        assert "/collections/{layer}/items" in seen.page.inner_text("body")
        seen.screenshot("api-docs.png")
        assert seen.external_requests() == []
        assert seen.errors == []


def test_the_landing_page_leads_to_a_sign_in_then_to_the_answer(live_url: str) -> None:
    # programs still get JSON and a 401 they can read
    plain = httpx.get(f"{live_url}/collections")
    assert plain.status_code == 401 and plain.json()["code"] == "Unauthorized"
    with visit(f"{live_url}/") as seen:
        page = seen.page
        text = page.inner_text("body")
        for words in ("/map", "指挥中心地图", "指挥中心大屏", "网格员平板", "🔒", "需登录"):
            assert words in text or page.locator(f'a[href="{words}"]').count(), words
        page.click('a[href="/collections"]')
        page.wait_for_selector("input[name=username]")
        assert "请登录 Sign in" in page.inner_text("body")
        assert '"code"' not in page.inner_text("body")
        page.fill("input[name=username]", "planner")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        page.wait_for_selector(".twin-error")
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.click("button[type=submit]")
        # the layers, as the collection's HTML page
        page.wait_for_selector('a[href*="/collections/buildings"]', timeout=10_000)
        seen.screenshot("signed-in-collections.png")
        # a layer's items as a table, each feature's id leading to its own page
        page.click('a[href$="/collections/waste_points/items?f=html"]')
        page.wait_for_selector("table td a")
        assert "桶数 Bins" in page.inner_text("table")
        page.click("table td a")
        page.wait_for_selector("th:has-text('状态 State')")
        assert "/items/" in page.url
        # signed in once: the next page needing a token shows at once (here a JSON answer,
        # its links clickable)
        page.goto(f"{live_url}/stats")
        page.wait_for_selector("pre")
        assert '"buildings"' in page.inner_text("pre")
        page.goto(f"{live_url}/changes?limit=2")
        page.wait_for_selector("pre a")
        page.click("pre a[href*='cursor=']")
        page.wait_for_selector("pre")
        assert "cursor=" in page.url
        # one session for every page: the map opens signed in; signing out there revokes
        # the token, and the API's pages ask again
        kept = page.evaluate("() => localStorage.getItem('twin.token')")
        page.goto(f"{live_url}/map")
        page.wait_for_function(
            "() => window.twinLiveMap && window.twinLiveMap.groups.waste_points"
            ".getLayers().length > 0", timeout=20_000)
        page.get_by_text("退出 Sign out").click()
        page.wait_for_selector(".twin-live input[name=username]")
        assert httpx.get(f"{live_url}/auth/me",
                         headers={"Authorization": f"Bearer {kept}"}).status_code == 401
        page.goto(f"{live_url}/stats")
        page.wait_for_selector("input[name=username]")
        # the only errors the console saw: the 401s of the pages that asked to sign in
        assert seen.errors and all("status of 401" in error for error in seen.errors)
        assert seen.external_requests() == []
