"""My cases (我的案件) on the field page in headless Chromium: a case reported offline with a
photo and a GPS fix in at most five taps survives a reload and syncs; a dispatched case is
handled; a queued move whose case moved on comes back a conflict and is shown; a verification
from too far is refused with the server's words, then done from the case's place."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
from playwright.sync_api import FilePayload
from sqlalchemy import text

from tests.browser import visit
from tests.conftest import Database, bearer
from tests.features.test_photos import png
from tests.field.test_field_page import OUTBOX_JS, TABLET, FieldPage, _grid_and_points

MAX_TAPS_TO_REPORT = 5
LOCAL = '#cases .case-item[data-case^="cases/local-"]'
# the case's step is synced: nothing waits, and nothing is left for me to do on it
SYNCED_JS = """(selector) => document.getElementById("status").dataset.pending === "0"
  && !document.querySelector(`${selector} .badge, ${selector} .todo`)"""


def _photo(content: bytes) -> list[FilePayload]:
    return [{"name": "case.png", "mimeType": "image/png", "buffer": content}]


def _inside(db: Database, grid: str) -> tuple[float, float]:
    with db.admin.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM twin.features "
            "WHERE layer = 'micro_grids' AND props ->> 'code' = :g) s"), {"g": grid}).one()
    return float(lon), float(lat)


class Dispatcher:
    """The command centre's dispatcher over HTTP, minding each case's version (its ETag)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {bearer(url, 'dispatcher')}"}
        self.versions: dict[int, int] = {}

    def cases(self) -> dict[int, dict[str, Any]]:
        """Every case's properties, by id (GET /cases/{id} fails on a case with stages: its
        "stages" hold datetimes that JSONResponse cannot write, twin.cases.reads.get_case)."""
        answer = httpx.get(f"{self.url}/cases", headers=self.headers, params={"limit": 1000})
        assert answer.status_code == 200, answer.text
        return {c["id"]: c["properties"] for c in answer.json()["features"]}

    def report(self, category: str, lon: float, lat: float) -> int:
        answer = httpx.post(f"{self.url}/cases", headers=self.headers, json={
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"category": category, "source": "hotline"}})
        assert answer.status_code == 201, answer.text
        case_id = int(answer.json()["id"])
        self.versions[case_id] = answer.json()["properties"]["version"]
        return case_id

    def move(self, case_id: int, to: str, **body: Any) -> dict[str, Any]:
        etag = f'"case-{case_id}-{self.versions[case_id]}"'
        answer = httpx.post(f"{self.url}/cases/{case_id}/transitions", json={"to": to, **body},
                            headers={**self.headers, "If-Match": etag})
        assert answer.status_code == 200, answer.text
        props = dict(answer.json()["properties"])
        self.versions[case_id] = props["version"]
        return props

    def dispatched(self, category: str, lon: float, lat: float) -> tuple[int, str]:
        """A case reported, filed and dispatched; its id and to whom it went."""
        case_id = self.report(category, lon, lat)
        self.move(case_id, "filed")
        return case_id, self.move(case_id, "dispatched")["assignee"]


def test_a_case_reported_offline_survives_a_reload_and_syncs_with_its_photo(
        live_url: str, sample_db: Database) -> None:
    grid, _ = _grid_and_points(sample_db)
    worker = f"worker-{grid}"
    lon, lat = _inside(sample_db, grid)
    photo = png()
    with visit(f"{live_url}/field", **TABLET) as seen:
        field, page = FieldPage(seen), seen.page
        page.context.grant_permissions(["geolocation"], origin=live_url)
        page.context.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 6})
        field.sign_in(worker)
        page.locator("#cases").wait_for()
        page.context.set_offline(True)
        page.wait_for_function("!navigator.onLine")

        field.taps = 0
        field.tap("#report-case")
        first = page.locator("#case-categories [data-category]").first
        code = first.get_attribute("data-category")
        assert code
        field.tap(f'#case-categories [data-category="{code}"]')
        page.set_input_files("#sheet input[type=file]", files=_photo(photo))
        field.taps += 1  # taking the photo
        page.locator("#thumbs img").wait_for()
        page.locator("#case-place", has_text="±6").wait_for()  # the fix came by itself
        assert field.small_targets() == []
        seen.screenshot("field-case-report.png")
        field.tap("#case-send")
        assert field.taps <= MAX_TAPS_TO_REPORT
        field.wait_pending(1)
        page.locator(f"{LOCAL} .badge").wait_for()
        outbox = page.evaluate(OUTBOX_JS)

        page.reload()  # offline: the service worker serves the page, IndexedDB the outbox
        page.locator(LOCAL).wait_for()
        assert field.pending() == 1
        assert "已上报" in page.inner_text(LOCAL)

        page.context.set_offline(False)
        field.wait_pending(0)
        assert page.inner_text("#sync-error") == ""
        page.locator('#cases .case-item:not([data-case*="local-"])').first.wait_for()
        assert page.locator(LOCAL).count() == 0
        page.click("#lang")
        assert page.inner_text("#report-case") == "Report case"
        assert seen.errors == [], "\n".join(seen.requests)
        assert seen.external_requests() == []

    [edit] = outbox
    assert edit["layer"] == "cases" and edit["op"] == "create"
    assert edit["changes"]["photos"]["new"] == [hashlib.sha256(photo).hexdigest()]
    dispatcher = Dispatcher(live_url)
    found = httpx.get(f"{live_url}/cases", headers=dispatcher.headers,
                      params={"micro_grid": grid}).json()["features"]
    [case] = [c for c in found if c["properties"]["reported_by"] == worker]
    props = case["properties"]
    assert (props["category"], props["state"], props["source"]) == (code, "reported", "worker")
    assert props["photos"] == [hashlib.sha256(photo).hexdigest()]
    assert case["geometry"]["coordinates"] == [round(lon, 7), round(lat, 7)]
    stored = httpx.get(f"{live_url}/photos/{props['photos'][0]}", headers=dispatcher.headers)
    assert stored.status_code == 200 and stored.content == photo


def test_handle_a_conflict_shown_and_a_verification_refused_then_done(
        live_url: str, sample_db: Database) -> None:
    grid, _ = _grid_and_points(sample_db)
    worker = f"worker-{grid}"
    lon, lat = _inside(sample_db, grid)
    dispatcher = Dispatcher(live_url)
    # categories a worker fixes: each goes to the worker of its grid
    (handled, to1), (moved, to2), (verified, to3) = (
        dispatcher.dispatched("E0102", lon, lat), dispatcher.dispatched("E0506", lon + 0.0002, lat),
        dispatcher.dispatched("E0104", lon, lat + 0.0002))
    assert {to1, to2, to3} == {worker}
    dispatcher.move(verified, "handled")  # handled by someone else: this worker verifies it
    item = '#cases .case-item[data-case="cases/{}"]'.format

    with visit(f"{live_url}/field", **TABLET) as seen:
        field, page = FieldPage(seen), seen.page
        page.context.grant_permissions(["geolocation"], origin=live_url)
        page.context.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 5})
        field.sign_in(worker)
        page.locator(item(handled)).wait_for()
        assert "待处置" in page.inner_text(item(handled))
        assert "暴露垃圾" in page.inner_text(item(handled))
        assert "Exposed rubbish" in page.inner_text(item(handled))
        assert "到期" in page.inner_text(item(handled))
        assert "待核查" in page.inner_text(item(verified))
        assert page.locator(".case-marker").count() >= 3
        seen.screenshot("field-cases.png")

        # handled from the page (two taps)
        page.click(item(handled))
        page.locator("#case-place", has_text="±5").wait_for()
        page.click("#case-handle")
        page.wait_for_function(SYNCED_JS, arg=item(handled))

        # a move queued offline while the dispatcher returns the case: a conflict, shown
        page.context.set_offline(True)
        page.wait_for_function("!navigator.onLine")
        page.click(item(moved))
        page.click("#case-handle")
        field.wait_pending(1)
        dispatcher.move(moved, "filed", reason="派错了 wrong squad")
        page.context.set_offline(False)
        field.wait_pending(0)
        page.locator("#toast", has_text="案件已被他人处理").wait_for()
        page.wait_for_function("document.getElementById('conflict-count').textContent === '1'")
        page.click("#conflicts-button")
        card = page.locator("#sheet .case-conflict")
        assert "已立案" in card.inner_text()  # what the case is now
        seen.screenshot("field-case-conflict.png")
        card.get_by_role("button").click()
        card.wait_for(state="detached")
        page.click("#sheet .actions button")

        # a verification from 200 m away is refused with the server's words, then done on site
        page.context.set_geolocation({"latitude": lat + 0.002, "longitude": lon, "accuracy": 5})
        page.click(item(verified))
        page.locator("#case-place", has_text="米").wait_for()
        page.set_input_files("#sheet input[type=file]", files=_photo(png()))
        page.locator("#thumbs img").wait_for()
        page.click("#case-close")
        page.locator("#toast", has_text="核查须在案件50米范围内进行").wait_for()
        field.wait_pending(0)
        page.context.set_geolocation({"latitude": lat + 0.0002, "longitude": lon,
                                      "accuracy": 5})
        page.click(item(verified))
        page.locator("#case-place", has_text="距案件 0 米").wait_for()
        page.set_input_files("#sheet input[type=file]", files=_photo(png()))
        page.locator("#thumbs img").wait_for()
        page.click("#case-close")
        page.locator(item(verified)).wait_for(state="detached")  # closed: off the open list
        field.wait_pending(0)
        assert seen.errors == [], "\n".join(seen.requests)
        assert seen.external_requests() == []

    now = dispatcher.cases()
    assert (now[handled]["state"], now[handled]["handled_by"]) == ("handled", worker)
    assert now[moved]["state"] == "filed"
    assert now[verified]["state"] == "closed"
    with sample_db.admin.connect() as conn:
        statuses = conn.execute(text(
            "SELECT feature_id, status FROM twin.edits WHERE actor = :w AND layer = 'cases' "
            "ORDER BY id"), {"w": worker}).all()
    assert [tuple(s) for s in statuses] == [(handled, "applied"), (moved, "conflict"),
                                           (verified, "rejected"), (verified, "applied")]
    # dismissing the conflict's card settled it on the server, keeping the server's side
    assert sample_db.scalar("SELECT resolution ->> 'choose' FROM twin.edits WHERE actor = :w "
                            "AND status = 'conflict'", w=worker) == "server"
