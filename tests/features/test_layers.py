"""Layers declared in a running twin: added by an admin (the CLI in another process, or POST
/layers), served, edited, synced to a tablet and drawn on the live map without a restart;
changed by adding an enum value, each version kept; changes the features might not fit
refused with nothing changed."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient

from tests.browser import visit
from tests.conftest import DEMO_PASSWORD, Database, bearer, login, run_twin, serve
from twin.layerspec import parse_spec_text
from twin.registry import use_declared

BENCHES = """
name = "benches"
title_zh = "座椅"
title_en = "Benches"
description = "Public benches along the streets."
geometry = "Point"
tile_attributes = ["seats", "state"]

[attributes.seats]
type = "integer"
minimum = 1
maximum = 20
default = 3
title = "座位 Seats"

[attributes.state]
type = "enum"
values = ["ok", "broken"]
default = "ok"
title = "状态 State"

[states]
field = "state"
values.ok = { label = "完好 ok", color = "#1a9850" }
values.broken = { label = "损坏 broken", color = "#d73027" }

[style]
color = "#1a9850"
"""


@pytest.fixture(autouse=True)
def _files_only() -> Iterator[None]:
    """This process serves what its test's twin declared; the next test starts from the
    files again."""
    yield
    use_declared({})


def _inside(db: Database) -> tuple[str, list[float]]:
    grid, x, y = db.one("SELECT props ->> 'code', ST_X(ST_PointOnSurface(geom)), "
                        "ST_Y(ST_PointOnSurface(geom)) FROM twin.features "
                        "WHERE layer = 'micro_grids' ORDER BY props ->> 'code' LIMIT 1")
    return grid, [x, y]


def _bench(xy: list[float], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": xy},
            "properties": props}


def test_a_layer_added_at_run_time_is_served_edited_synced_and_drawn(
        sample_db: Database, tmp_path: Path) -> None:
    grid, xy = _inside(sample_db)
    with serve(sample_db.settings()) as url:
        worker = {"Authorization": f"Bearer {bearer(url, f'worker-{grid}')}"}
        admin = {"Authorization": f"Bearer {bearer(url, 'admin')}"}
        assert httpx.get(f"{url}/collections/benches", headers=worker).status_code == 404
        spec = tmp_path / "benches.toml"
        spec.write_text(BENCHES, encoding="utf-8")
        added = run_twin("layer", "add", str(spec), env=sample_db.env())
        assert added.returncode == 0, added.stderr
        # declared by another process: this server learns it from PostgreSQL, not a restart
        deadline = time.monotonic() + 60  # a hang guard (a busy machine is slow)
        while httpx.get(f"{url}/collections/benches", headers=worker).status_code != 200:
            assert time.monotonic() < deadline, "the server did not hear of the new layer"
            time.sleep(0.1)

        created = httpx.post(f"{url}/collections/benches/items", headers=worker,
                             json=_bench(xy, seats=4))
        assert created.status_code == 201, created.text
        fid = created.json()["id"]
        bad = httpx.post(f"{url}/collections/benches/items", headers=worker,
                         json=_bench(xy, seats=99))
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "seats"
        schema = httpx.get(f"{url}/collections/benches/schema", headers=worker).json()
        assert {"seats", "state"} <= set(schema["properties"])
        n = 2**17
        x = int((xy[0] + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(xy[1]))) / math.pi) / 2 * n)
        tile = httpx.get(f"{url}/collections/benches/tiles/WebMercatorQuad/17/{x}/{y}",
                         headers=worker)
        assert [f["properties"]["seats"] for f in mapbox_vector_tile.decode(
            tile.content)["benches"]["features"]] == [4]

        # the tablet: its page knows the layer, its scope holds the bench, its outbox syncs
        assert '"benches"' in httpx.get(f"{url}/field").text
        scope = httpx.get(f"{url}/sync/scope", headers=worker).json()
        assert scope["layers"]["benches"]["title"] == "座椅 Benches"  # an open page learns it
        assert [f["id"] for f in scope["features"]["features"]
                if f["layer"] == "benches"] == [fid]
        synced = httpx.post(f"{url}/sync", headers=worker, json={"edits": [{
            "edit_id": "3f1b7f0e-0000-4000-8000-000000000001", "device_id": "tablet-1",
            "device_seq": 1, "layer": "benches", "op": "update", "feature_id": fid,
            "base_version": 1, "reason": "巡查 patrol",
            "device_time": "2026-12-07T09:00:00+08:00",
            "changes": {"state": {"new": "broken"}}}]})
        assert synced.json()["results"][0]["status"] == "applied", synced.text

        # an enum value added at run time, logged as the layer's next version
        read = httpx.get(f"{url}/layers/benches", headers=admin)
        assert read.json()["version"] == 1
        changed_spec = {**read.json()["spec"]}
        changed_spec["attributes"]["state"]["values"].append("removed")
        changed = httpx.put(f"{url}/layers/benches", json=changed_spec, headers={
            **admin, "If-Match": read.headers["ETag"]})
        assert changed.status_code == 200, changed.text
        assert changed.json()["changes"] == ["enum value added: state = removed"]
        patched = httpx.patch(f"{url}/collections/benches/items/{fid}", headers={
            **worker, "If-Match": f'"{fid}-2"'}, json={"type": "Feature",
                                                      "properties": {"state": "removed"}})
        assert patched.status_code == 200, patched.text
        versions = httpx.get(f"{url}/layers/benches/versions", headers=worker).json()
        assert [(v["version"], v["changed_by"]) for v in versions["versions"]] == [
            (2, "admin"), (1, sample_db.env().get("USER", "twin"))]
        log = httpx.get(f"{url}/changes?layer=benches", headers=admin).json()
        assert len(log["changes"]) == 3  # created, synced, patched: each kept

        # the live map draws it, from the same server, signed in as the commander
        with visit(f"{url}/map") as seen:
            page = seen.page
            page.fill("input[name=username]", "commander")
            page.fill("input[name=password]", DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_function("() => window.twinLiveMap.groups.benches && "
                                   "window.twinLiveMap.groups.benches.getLayers().length > 0",
                                   timeout=60_000)
            assert seen.errors == []


def test_only_admins_declare_and_what_features_might_not_fit_is_refused(
        client: TestClient, sample_db: Database) -> None:
    admin = login(client, "admin")
    spec = parse_spec_text(BENCHES)
    assert client.post("/layers", json=spec, headers=login(client, "planner")).status_code == 403
    assert client.post("/layers", content="x", headers={
        **admin, "Content-Type": "text/plain"}).status_code == 415
    assert client.post("/layers", content="name = ", headers={
        **admin, "Content-Type": "application/toml"}).status_code == 400
    wrong = client.post("/layers", json={**spec, "geometry": "Circle"}, headers=admin)
    assert wrong.status_code == 422 and "Circle" in wrong.json()["description"]
    assert client.post("/layers", json={**spec, "name": "waste_points"},
                       headers=admin).status_code == 409
    assert client.post("/layers", json={**spec, "group": "areas"},
                       headers=admin).status_code == 422
    assert sample_db.one("SELECT count(*) FROM twin.layer_specs WHERE layer = 'benches'")[0] == 0

    added = client.post("/layers", content=BENCHES.encode(), headers={
        **admin, "Content-Type": "application/toml"})
    assert added.status_code == 201 and added.headers["Location"] == "/layers/benches"
    etag = added.headers["ETag"]
    assert client.put("/layers/benches", json=spec, headers=admin).status_code == 428
    assert client.put("/layers/benches", json=spec, headers={
        **admin, "If-Match": '"benches-7"'}).status_code == 412
    for refused in ({**spec, "attributes": {"state": spec["attributes"]["state"]}},
                    {**spec, "attributes": {**spec["attributes"], "count": {"type": "integer"}}},
                    {**spec, "attributes": {**spec["attributes"], "seats": {
                        **spec["attributes"]["seats"], "maximum": 10}}},
                    {**spec, "geometry": "Polygon"}):
        answer = client.put("/layers/benches", json=refused, headers={**admin, "If-Match": etag})
        assert answer.status_code == 422, refused
        assert answer.json()["problems"]
    kept = client.put("/layers/benches", json={**spec, "attributes": {
        **spec["attributes"], "material": {"type": "text", "nullable": True,
                                           "title": "材质 Material"}}},
        headers={**admin, "If-Match": etag})
    assert kept.status_code == 200 and kept.json()["changes"] == ["attribute added: material"]
    assert client.put("/layers/benches", json=spec, headers={
        **admin, "If-Match": etag}).status_code == 412  # version 1 is no longer current
    assert sample_db.one("SELECT count(*) FROM twin.layer_specs "
                         "WHERE layer = 'benches'")[0] == 2
    listed = {row["name"]: row for row in client.get("/layers", headers=admin).json()["layers"]}
    assert listed["benches"]["version"] == 2 and listed["waste_points"]["source"] == "file"
