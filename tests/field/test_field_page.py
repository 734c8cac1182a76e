"""The grid worker's tablet page in headless Chromium: sign in, edit offline, reload, sync,
resolve a conflict, add a point by GPS; every asset from Twin, every control 44 px."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import httpx
from fastapi.testclient import TestClient
from playwright.sync_api import Page
from sqlalchemy import text

from tests.browser import Visit, visit
from tests.conftest import DEMO_PASSWORD, Database, bearer
from tests.features.test_photos import png
from twin.field.scope import editable_layers
from twin.registry import get_layer

TABLET = {"width": 820, "height": 1180}  # a tablet in portrait
MAX_TAPS_FOR_A_FIX = 5
MIN_TARGET_PX = 44
PENDING = "document.getElementById('status').dataset.pending"
# Every control a finger may use, as the page lays them out (hidden ones have no box).
SMALL_TARGETS_JS = """(min) => [...document.querySelectorAll(
    "button, select, input, .button, .leaflet-bar a")]
  .map((el) => [el.id || el.name || el.textContent.trim(), el.getBoundingClientRect()])
  .filter(([, box]) => box.width > 0 && box.height > 0 && (box.width < min || box.height < min))
  .map(([name, box]) => `${name}: ${box.width}x${box.height}`)"""
SYNCED_NEW_ITEM_JS = """(before) => [...document.querySelectorAll("#list .item")]
  .map((item) => item.dataset.key)
  .find((key) => !before.includes(key) && !key.includes("/local-"))"""
OUTBOX_JS = """() => new Promise((resolve) => {
  indexedDB.open("twin-field").onsuccess = (event) => {
    const request = event.target.result.transaction("outbox").objectStore("outbox").getAll();
    request.onsuccess = () => resolve(request.result);
  };
})"""


@dataclass(frozen=True)
class Point:
    layer: str
    id: int
    version: int
    props: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.id}"

    def other_state(self) -> str:
        states = get_layer(self.layer).state_labels
        return next(s for s in states if s != self.props["state"])


def _grid_and_points(db: Database) -> tuple[str, list[Point]]:
    """The micro-grid with the most points (waste points first), and those points."""
    with db.admin.connect() as conn:
        grid = conn.execute(text(
            "SELECT grid_code FROM twin.features WHERE layer IN ('waste_points', "
            "'charging_points') GROUP BY grid_code ORDER BY count(*) DESC, "
            "count(*) FILTER (WHERE layer = 'waste_points') DESC, grid_code LIMIT 1")).scalar_one()
        rows = conn.execute(text(
            "SELECT layer, id, version, props FROM twin.features WHERE grid_code = :g AND layer "
            "IN ('waste_points', 'charging_points') ORDER BY layer DESC, id"), {"g": grid}).all()
    points = [Point(*row) for row in rows]
    assert len(points) >= 2, f"grid {grid} has fewer than two points"
    return grid, points


def _points_of(db: Database, grid: str) -> list[str]:
    """What a worker's list shows: the points of the grid in every layer a tablet carries."""
    layers = [name for name in editable_layers("worker") if get_layer(name).geometry_type
              == "Point"]
    with db.admin.connect() as conn:
        return sorted(conn.execute(text(
            "SELECT layer || '/' || id FROM twin.features WHERE grid_code = :g "
            "AND layer = ANY(:layers)"), {"g": grid, "layers": layers}).scalars())


class FieldPage:
    """The page driven as a worker would, counting the taps."""

    def __init__(self, seen: Visit) -> None:
        self.seen = seen
        self.page: Page = seen.page
        self.taps = 0

    def tap(self, selector: str) -> None:
        self.page.locator(selector).click()
        self.taps += 1

    def sign_in(self, user: str) -> None:
        self.page.fill("#login [name=username]", user)
        self.page.fill("#login [name=password]", DEMO_PASSWORD)
        self.page.click("#login button[type=submit]")
        self.page.locator("#list .item").first.wait_for()
        # the service worker keeps the page for a reload without network
        self.page.evaluate("navigator.serviceWorker.ready.then(() => true)")

    def item(self, point: Point) -> str:
        return f'#list .item[data-key="{point.key}"]'

    def pending(self) -> int:
        return int(self.page.evaluate(PENDING))

    def wait_pending(self, n: int) -> None:
        self.page.wait_for_function(f"{PENDING} === '{n}'", timeout=15_000)

    def small_targets(self) -> list[str]:
        found: list[str] = self.page.evaluate(SMALL_TARGETS_JS, MIN_TARGET_PX)
        return found


def _settled_box(page: Page, selector: str) -> dict[str, float]:
    """The element's box once it stopped moving (a pan or zoom animation ended)."""
    box = None
    for _ in range(50):
        now = page.locator(selector).bounding_box()
        if now is not None and now == box:
            return dict(now)
        box = now
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector} kept moving")


def test_the_page_loads_without_a_token_and_only_from_twin(client: TestClient) -> None:
    page = client.get("/field")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>网格员 Twin Field</title>" in page.text
    refs = [ref for ref in re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"([^\"]+)",
                                      page.text) if ref != "data:,"]  # data:, the empty icon
    assert refs and all(ref.startswith("/static/") for ref in refs)
    static = files("twin") / "static"
    assert all((static / ref.removeprefix("/static/")).is_file() for ref in refs)
    worker = client.get("/field/sw.js")
    assert worker.headers["service-worker-allowed"] == "/field"


def test_offline_edits_survive_a_reload_then_sync_into_the_log(live_url: str,
                                                               sample_db: Database) -> None:
    grid, points = _grid_and_points(sample_db)
    worker = f"worker-{grid}"
    first, second = points[0], points[1]
    new_state = first.other_state()
    number = "bins" if second.layer == "waste_points" else "sockets"
    limit = get_layer(second.layer).attributes.model_json_schema()["properties"][number]["maximum"]
    new_number = 1 if second.props[number] != 1 else 2

    with visit(f"{live_url}/field", **TABLET) as seen:
        field, page = FieldPage(seen), seen.page
        field.sign_in(worker)
        listed = page.eval_on_selector_all("#list .item", "items => items.map(i => i.dataset.key)")
        assert sorted(listed) == _points_of(sample_db, grid)
        assert {p.key for p in points} <= set(listed)
        assert page.locator(".leaflet-overlay-pane canvas").count() >= 1
        seen.screenshot("field-grid.png")
        assert field.small_targets() == []

        page.context.set_offline(True)
        page.wait_for_function("!navigator.onLine")
        field.taps = 0
        field.tap(field.item(first))
        field.tap(f'#sheet [data-field="state"] [data-value="{new_state}"]')
        assert field.small_targets() == []
        seen.screenshot("field-form.png")
        field.tap("#save")
        assert field.taps <= MAX_TAPS_FOR_A_FIX
        field.wait_pending(1)

        # inline validation refuses an out-of-range number before anything is queued
        page.click(field.item(second))
        page.fill(f'#sheet input[name="{number}"]', str(limit + 1))
        assert str(limit) in page.inner_text(f'#sheet [data-error="{number}"]')
        page.click("#save")
        assert page.locator("#sheet").is_visible() and field.pending() == 1
        page.fill(f'#sheet input[name="{number}"]', str(new_number))
        assert page.inner_text(f'#sheet [data-error="{number}"]') == ""
        page.fill("#reason", "现场核实 checked on site")
        page.click("#save")
        field.wait_pending(2)
        outbox = page.evaluate(OUTBOX_JS)

        page.reload()  # offline: the service worker serves the page, IndexedDB the rest
        page.locator(field.item(first)).wait_for()
        assert field.pending() == 2
        label = get_layer(first.layer).state_labels[new_state]
        assert label in page.inner_text(field.item(first))
        assert page.locator("#list .badge").count() == 2
        assert "离线" in page.inner_text("#status")

        page.context.set_offline(False)
        field.wait_pending(0)
        assert page.inner_text("#sync-error") == ""
        assert "从未" not in page.inner_text("#last-sync")
        assert page.locator("#list .badge").count() == 0

    edits = {e["feature_id"]: e for e in outbox}
    assert edits[first.id]["changes"] == {"state": {"old": first.props["state"], "new": new_state}}
    assert edits[first.id]["base_version"] == first.version
    assert edits[second.id]["reason"] == "现场核实 checked on site"
    assert [e["device_seq"] for e in sorted(outbox, key=lambda e: e["device_seq"])] == [1, 2]
    with sample_db.admin.connect() as conn:
        logged = conn.execute(text(
            "SELECT feature_id, edit_id, new_values, reason FROM twin.changes "
            "WHERE actor = :w ORDER BY id"), {"w": worker}).all()
    assert {(row.feature_id, row.edit_id) for row in logged} == {
        (first.id, edits[first.id]["edit_id"]), (second.id, edits[second.id]["edit_id"])}
    values = {row.feature_id: row.new_values for row in logged}
    assert values[first.id]["state"] == new_state and values[second.id][number] == new_number
    with sample_db.admin.connect() as conn:  # the tablet told the board nothing waits on it
        reported = conn.execute(text(
            "SELECT waiting, oldest FROM twin.device_outboxes WHERE actor = :w AND device = :d"),
            {"w": worker, "d": outbox[0]["device_id"]}).one()
    assert tuple(reported) == (0, None)
    feed = httpx.get(f"{live_url}/changes", params={"actor": worker},
                     headers={"Authorization": f"Bearer {bearer(live_url, 'admin')}"}).json()
    assert {c["edit_id"] for c in feed["changes"]} == {e["edit_id"] for e in outbox}
    assert seen.errors == [], "\n".join(seen.requests)
    assert seen.external_requests() == []


def test_a_conflict_is_shown_side_by_side_and_resolved(live_url: str,
                                                       sample_db: Database) -> None:
    grid, points = _grid_and_points(sample_db)
    point = points[0]
    states = list(get_layer(point.layer).state_labels)
    mine, theirs = [s for s in states if s != point.props["state"]][:2]
    labels = get_layer(point.layer).state_labels

    with visit(f"{live_url}/field", **TABLET) as seen:
        field, page = FieldPage(seen), seen.page
        field.sign_in(f"worker-{grid}")
        page.context.set_offline(True)
        page.wait_for_function("!navigator.onLine")
        page.click(field.item(point))
        page.click(f'#sheet [data-field="state"] [data-value="{mine}"]')
        page.click("#save")

        # meanwhile someone else changes the same field on the server
        admin = {"Authorization": f"Bearer {bearer(live_url, 'admin')}"}
        answer = httpx.post(f"{live_url}/sync", headers=admin, json={"edits": [{
            "edit_id": str(uuid.uuid4()), "layer": point.layer, "feature_id": point.id,
            "op": "update", "base_version": point.version,
            "changes": {"state": {"old": point.props["state"], "new": theirs}}}]}).json()
        assert answer["results"][0]["status"] == "applied", answer

        page.context.set_offline(False)
        field.wait_pending(0)
        page.wait_for_function("document.getElementById('conflict-count').textContent === '1'")
        page.click("#conflicts-button")
        conflict = page.locator("#sheet .conflict")
        sides = {side: conflict.locator(f'.side[data-field="state"][data-side="{side}"]')
                 .inner_text() for side in ("base", "mine", "server")}
        assert sides == {"base": labels[point.props["state"]], "mine": labels[mine],
                         "server": labels[theirs]}
        seen.screenshot("field-conflict.png")
        assert field.small_targets() == []
        conflict.locator('.side[data-field="state"][data-side="mine"]').click()
        conflict.locator('[data-choose="values"]').click()
        conflict.wait_for(state="detached")
        page.wait_for_function("document.getElementById('conflict-count').textContent === '0'")
        assert labels[mine] in page.inner_text(field.item(point))

    with sample_db.admin.connect() as conn:
        state = conn.execute(text("SELECT props ->> 'state' FROM twin.features WHERE id = :i"),
                             {"i": point.id}).scalar_one()
        resolved = conn.execute(text("SELECT resolved_by FROM twin.edits WHERE status = "
                                     "'conflict' AND feature_id = :i"), {"i": point.id}).all()
    assert state == mine
    assert [row.resolved_by for row in resolved] == [f"worker-{grid}"]
    assert seen.errors == [], "\n".join(seen.requests)
    assert seen.external_requests() == []


def test_a_point_is_added_by_gps_with_a_photo_and_a_poor_fix_is_refused(live_url: str,
                                                           sample_db: Database) -> None:
    grid, _ = _grid_and_points(sample_db)
    with sample_db.admin.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM twin.features "
            "WHERE layer = 'micro_grids' AND props ->> 'code' = :g) s"), {"g": grid}).one()
    limit = get_layer("waste_points").max_gps_error_m
    assert limit is not None

    with visit(f"{live_url}/field", **TABLET) as seen:
        field, page = FieldPage(seen), seen.page
        page.context.grant_permissions(["geolocation"], origin=live_url)
        field.sign_in(f"worker-{grid}")
        listed = page.eval_on_selector_all("#list .item", "items => items.map(i => i.dataset.key)")
        page.click("#lang")  # English labels too
        assert page.inner_text("#add") == "Add point"
        page.click("#add")
        page.click('#sheet [data-layer="waste_points"]')

        page.context.set_geolocation({"latitude": lat, "longitude": lon,
                                      "accuracy": limit * 4})
        page.click("#add-gps")
        page.locator("#toast", has_text="too imprecise").wait_for()
        assert page.locator("#add-gps").is_visible()  # still choosing a place

        page.context.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 5})
        page.click("#add-gps")
        page.locator("#save").wait_for()
        page.click('#sheet [data-field="state"] [data-value="full"]')
        photo = png()
        page.set_input_files('#sheet input[type="file"]', files=[
            {"name": "fix.png", "mimeType": "image/png", "buffer": photo}])
        page.locator("#thumbs img").wait_for()
        page.click("#save")
        # listed under its new id once the server answered
        new_key = page.wait_for_function(SYNCED_NEW_ITEM_JS, arg=listed).json_value()
        assert new_key.startswith("waste_points/") and field.pending() == 0
        assert page.inner_text(f'#list .item[data-key="{new_key}"] .state') == "full"

    with sample_db.admin.connect() as conn:
        added = conn.execute(text(
            "SELECT f.grid_code, f.props ->> 'state' AS state, f.props -> 'photos' AS photos, "
            "c.edit_id FROM twin.changes c "
            "JOIN twin.features f ON f.id = c.feature_id WHERE c.actor = :w "
            "AND c.operation = 'insert'"), {"w": f"worker-{grid}"}).one()
    assert added.grid_code == grid and added.state == "full" and added.edit_id
    assert added.photos == [hashlib.sha256(photo).hexdigest()]
    assert seen.errors == [], "\n".join(seen.requests)
    assert seen.external_requests() == []


def test_a_move_out_of_my_grid_comes_back_rejected_with_its_reasons(
        live_url: str, sample_db: Database) -> None:
    grid, points = _grid_and_points(sample_db)
    point = points[0]
    with visit(f"{live_url}/field", **TABLET) as seen:
        field, page = FieldPage(seen), seen.page
        field.sign_in(f"worker-{grid}")
        page.click(field.item(point))
        ring = _settled_box(page, ".edit-marker")  # the map pans to the point first
        top = page.locator("#map").bounding_box()
        assert top is not None
        page.mouse.move(ring["x"] + ring["width"] / 2, ring["y"] + ring["height"] / 2)
        page.mouse.down()
        page.mouse.move(top["x"] + top["width"] - 20, top["y"] + 20, steps=10)
        page.mouse.up()
        assert "米" in page.inner_text("#moved")
        page.click("#save")
        page.wait_for_function("document.getElementById('conflict-count').textContent === '1'")
        field.wait_pending(0)
        page.click("#conflicts-button")
        rejected = page.locator("#sheet .rejected")
        assert "要素不在您负责的微网格内" in rejected.inner_text()
        page.click("#lang")
        assert "outside your micro-grids" in rejected.inner_text()
        rejected.get_by_role("button").click()
        rejected.wait_for(state="detached")
        assert page.inner_text("#conflict-count") == "0"

    with sample_db.admin.connect() as conn:
        version = conn.execute(text("SELECT version FROM twin.features WHERE id = :i"),
                               {"i": point.id}).scalar_one()
    assert version == point.version
    assert seen.errors == []
    assert seen.external_requests() == []
