"""Each present feature's GeoJSON text is kept by the triggers (twin.features.geojson), and
a read of the present serves it: it must be exactly what building the text would give, after
every kind of write (an edit, a move, a delete brought back, an import, a grid's redraw that
reassigns its features, a write from a session in another time zone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Database, login, run_twin
from twin.features.reads import feature_sql
from twin.registry import get_layer

BUILT = feature_sql(get_layer("buildings"), stored=False)  # the same for every layer


def _stale(db: Database) -> list[Any]:
    """Features whose stored text differs from the text built from their columns now, in a
    UTC session (as the service's)."""
    with db.admin.connect() as conn:
        conn.exec_driver_sql("SET timezone = 'UTC'")
        return list(conn.exec_driver_sql(
            f"SELECT f.layer, f.id FROM twin.features f WHERE f.geojson <> {BUILT}").all())


def _served(client: TestClient, auth: dict[str, str], layer: str, fid: int) -> dict[str, Any]:
    """One feature as the present's read serves it (stored text), checked against the same
    moment read from its versions (built text)."""
    now = client.get(f"/collections/{layer}/items/{fid}", headers=auth)
    assert now.status_code == 200, now.text
    past = client.get(f"/collections/{layer}/items/{fid}",
                      params={"asOf": now.json()["properties"]["updated"]}, headers=auth)
    assert past.status_code == 200, past.text
    body: dict[str, Any] = now.json()
    assert past.json() == body
    return body


def test_the_sample_twin_holds_the_text_a_read_would_build(sample_db: Database,
                                                           client: TestClient) -> None:
    assert sample_db.scalar("SELECT count(*) FROM twin.features") > 6000
    assert _stale(sample_db) == []
    auth = login(client, "planner")
    page = client.get("/collections/buildings/items?limit=5", headers=auth).json()
    every = client.get("/collections/buildings/items?limit=5&properties="
                       + ",".join(page["features"][0]["properties"]), headers=auth).json()
    assert page["features"] == every["features"]  # stored text == the text built per field
    assert "+00:00" in page["features"][0]["properties"]["updated"]


def test_edits_moves_deletes_brought_back_keep_the_text(sample_db: Database,
                                                        client: TestClient) -> None:
    fid, grid = sample_db.one("SELECT id, grid_code FROM twin.features WHERE layer = "
                              "'waste_points' AND grid_code IS NOT NULL ORDER BY id LIMIT 1")
    worker = login(client, f"worker-{grid}")
    admin = login(client, "admin")
    url = f"/collections/waste_points/items/{fid}"
    before = _served(client, worker, "waste_points", fid)
    etag = f'"{fid}-{before["properties"]["version"]}"'
    changed = client.patch(url, headers={**worker, "If-Match": etag},
                           json={"type": "Feature", "properties": {"state": "full", "bins": 9}})
    assert changed.status_code == 200, changed.text
    after = _served(client, worker, "waste_points", fid)
    assert after["properties"]["bins"] == 9 and after["properties"]["state"] == "full"
    assert after["properties"]["changed_by"] == f"worker-{grid}"
    x, y = before["geometry"]["coordinates"]
    moved = client.patch(url, headers={**worker, "If-Match": changed.headers["ETag"]},
                         json={"type": "Feature",
                               "geometry": {"type": "Point", "coordinates": [x + 1e-5, y]}})
    assert moved.status_code == 200, moved.text
    assert _served(client, worker, "waste_points", fid)["geometry"]["coordinates"][0] == \
        round(x + 1e-5, 7)
    gone = client.delete(url, headers={**worker, "If-Match": moved.headers["ETag"]})
    assert gone.status_code == 204
    change = sample_db.scalar("SELECT max(id) FROM twin.changes WHERE feature_id = :f", f=fid)
    back = client.post(f"/changes/{change}/revert", json={"reason": "误删 deleted by mistake"},
                       headers=admin)
    assert back.status_code in (200, 201), back.text
    assert _served(client, worker, "waste_points", fid)["properties"]["version"] == 4
    assert _stale(sample_db) == []


def test_an_import_and_a_redrawn_grid_keep_the_text(sample_db: Database, client: TestClient,
                                                    tmp_path: Path) -> None:
    x, y = sample_db.one("SELECT ST_X(geom), ST_Y(geom) FROM twin.features "
                         "WHERE layer = 'waste_points' ORDER BY id LIMIT 1")
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x + i * 1e-4, y]},
         "properties": {"编号": f"P{i}", "bins": i + 1, "state": "ok"}} for i in range(20)]}),
        encoding="utf-8")
    done = run_twin("import", str(path), "waste_points", "--id", "编号", "--json",
                    env=sample_db.env())
    assert done.returncode == 0, done.stderr
    assert sample_db.scalar("SELECT count(*) FROM twin.features WHERE source_id LIKE 'P%'") == 20
    # a grid's code changed by its owner, in a session on Shanghai's time: every feature in it
    # is reassigned by the triggers, and the texts' times are still UTC
    grid = sample_db.scalar("SELECT props ->> 'code' FROM twin.features "
                            "WHERE layer = 'micro_grids' ORDER BY id LIMIT 1")
    with sample_db.admin.begin() as conn:
        conn.exec_driver_sql("SET LOCAL timezone = 'Asia/Shanghai'")
        conn.exec_driver_sql("SELECT twin.set_context('it-staff', 'admin')")
        conn.exec_driver_sql(
            "UPDATE twin.features SET props = props || '{\"code\": \"RECODED-1\"}' "
            f"WHERE layer = 'micro_grids' AND props ->> 'code' = '{grid}'")
    moved = sample_db.scalar("SELECT count(*) FROM twin.features WHERE grid_code = 'RECODED-1'")
    assert moved > 1
    assert _stale(sample_db) == []
    fid = sample_db.scalar("SELECT min(id) FROM twin.features WHERE grid_code = 'RECODED-1' "
                           "AND layer <> 'micro_grids'")
    layer = sample_db.scalar("SELECT layer FROM twin.features WHERE id = :f", f=fid)
    body = _served(client, login(client, "planner"), layer, fid)
    assert body["properties"]["micro_grid"] == "RECODED-1"
    assert body["properties"]["updated"].endswith("+00:00")
