"""Edits through OGC API - Features Part 4: versions, retries, validation and permission,
through HTTP against the sample twin; each refusal leaves the twin as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Database, login


def _changes(db: Database) -> int:
    return int(db.one("SELECT count(*) FROM twin.changes")[0])


@pytest.fixture
def point(sample_db: Database) -> dict[str, Any]:
    """A waste point, its micro-grid's worker, and a spot inside that grid."""
    fid, grid, version = sample_db.one("""
        SELECT f.id, f.grid_code, f.version FROM twin.features f
         WHERE f.layer = 'waste_points' AND f.grid_code IS NOT NULL ORDER BY f.id LIMIT 1""")
    x, y = sample_db.one("""
        SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM twin.features
         WHERE layer = 'micro_grids' AND props ->> 'code' = :g) s""", g=grid)
    other = sample_db.one("""
        SELECT props ->> 'code', ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom))
          FROM twin.features WHERE layer = 'micro_grids' AND props ->> 'code' <> :g
         ORDER BY props ->> 'code' LIMIT 1""", g=grid)
    return {"id": fid, "grid": grid, "version": version, "worker": f"worker-{grid}",
            "inside": [x, y], "other_grid": other[0], "elsewhere": [other[1], other[2]]}


def _feature(xy: list[float], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": xy},
            "properties": props}


def test_create_read_change_delete_with_versions(client: TestClient, sample_db: Database,
                                                 point: dict[str, Any]) -> None:
    auth = login(client, point["worker"])
    made = client.post("/collections/waste_points/items", headers=auth, json={
        **_feature(point["inside"], state="ok", bins=3, name="新投放点"),
        "reason": "新增 new point", "device_time": "2026-11-26T08:00:00+08:00"})
    assert made.status_code == 201, made.text
    fid = made.json()["id"]
    assert made.headers["Location"].endswith(f"/collections/waste_points/items/{fid}")
    assert made.headers["ETag"] == f'"{fid}-1"'
    read = client.get(f"/collections/waste_points/items/{fid}", headers=auth)
    assert read.json()["properties"]["bins"] == 3 and read.headers["ETag"] == f'"{fid}-1"'
    url = f"/collections/waste_points/items/{fid}"
    assert client.patch(url, headers=auth, json={"type": "Feature", "properties": {
        "state": "full"}}).status_code == 428
    changed = client.patch(url, headers={**auth, "If-Match": f'"{fid}-1"'}, json={
        "type": "Feature", "properties": {"state": "full"}, "reason": "满溢 full"})
    assert changed.status_code == 200 and changed.headers["ETag"] == f'"{fid}-2"'
    assert changed.json()["properties"] | {"state": "full", "bins": 3} == \
        changed.json()["properties"]
    stale = client.patch(url, headers={**auth, "If-Match": f'"{fid}-1"'}, json={
        "type": "Feature", "properties": {"state": "damaged"}})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2 and stale.json()["etag"] == f'"{fid}-2"'
    replaced = client.put(url, headers={**auth, "If-Match": f'"{fid}-2"'}, json=_feature(
        point["inside"], state="ok"))
    assert replaced.status_code == 200
    assert replaced.json()["properties"]["bins"] == 4  # the model's default: PUT replaces
    assert client.delete(url, headers=auth).status_code == 428
    gone = client.delete(url + "?reason=撤点", headers={**auth, "If-Match": f'"{fid}-3"'})
    assert gone.status_code == 204
    assert client.get(url, headers=auth).status_code == 404
    log = sample_db.one("SELECT array_agg(operation ORDER BY id), array_agg(reason ORDER BY id),"
               " min(client_time), array_agg(DISTINCT actor) FROM twin.changes "
               "WHERE feature_id = :id", id=fid)
    assert log[0] == ["insert", "update", "update", "delete"]
    assert log[1][0] == "新增 new point" and log[1][3] == "撤点"
    assert log[2].isoformat() == "2026-11-26T00:00:00+00:00"
    assert log[3] == [point["worker"]]


def test_a_retried_request_applies_once(client: TestClient, sample_db: Database,
                                        point: dict[str, Any]) -> None:
    auth = {**login(client, point["worker"]), "Idempotency-Key": "tablet-7-edit-42"}
    before = _changes(sample_db)
    first = client.post("/collections/waste_points/items", headers=auth,
                        json=_feature(point["inside"], state="ok"))
    again = client.post("/collections/waste_points/items", headers=auth,
                        json=_feature(point["inside"], state="ok"))
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.headers["ETag"] == again.headers["ETag"]
    assert _changes(sample_db) == before + 1
    url = f"/collections/waste_points/items/{point['id']}"
    patch = {"type": "Feature", "properties": {"bins": 9}}
    key = {**auth, "Idempotency-Key": "k2", "If-Match": f'"{point["id"]}-{point["version"]}"'}
    assert client.patch(url, headers=key, json=patch).status_code == 200
    assert client.patch(url, headers=key, json=patch).status_code == 200  # not 412
    assert _changes(sample_db) == before + 2


@pytest.mark.parametrize(("body", "field"), [
    ({"properties": {"state": "exploded"}}, "state"),
    ({"properties": {"bins": 0}}, "bins"),
    ({"properties": {"colour": "red"}}, "colour"),
    ({"properties": {"tags": ["nonsense"]}}, "tags"),
    ({"properties": {"name": 5}}, "name"),
    ({"properties": {"photos": ["0" * 64]}}, "photos"),
    ({"geometry": {"type": "LineString", "coordinates": [[121.5, 31.2], [121.51, 31.2]]}},
     "geometry"),
    ({"geometry": {"type": "Point", "coordinates": [0.0, 0.0]}}, "geometry"),
    ({"geometry": {"type": "Point", "coordinates": "here"}}, "geometry"),
])
def test_invalid_edits_are_422_with_every_problem_and_change_nothing(
        client: TestClient, sample_db: Database, point: dict[str, Any],
        body: dict[str, Any], field: str) -> None:
    auth = {**login(client, "admin"), "If-Match": f'"{point["id"]}-{point["version"]}"'}
    before = _changes(sample_db)
    answer = client.patch(f"/collections/waste_points/items/{point['id']}", headers=auth,
                          json={"type": "Feature", **body})
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    assert field in [p["field"] for p in problems]
    assert all(p["reason"] and p["reason_zh"] for p in problems)
    assert _changes(sample_db) == before


def test_a_poor_gps_fix_is_refused(client: TestClient, point: dict[str, Any]) -> None:
    auth = login(client, point["worker"])
    poor = client.post("/collections/waste_points/items", headers=auth, json={
        **_feature(point["inside"], state="ok"), "accuracy_m": 80})
    assert poor.status_code == 422 and poor.json()["problems"][0]["field"] == "accuracy_m"
    good = client.post("/collections/waste_points/items", headers=auth, json={
        **_feature(point["inside"], state="ok"), "accuracy_m": 6.5})
    assert good.status_code == 201


def test_a_worker_edits_only_inside_their_grid(client: TestClient, sample_db: Database,
                                               point: dict[str, Any]) -> None:
    auth = login(client, point["worker"])
    before = _changes(sample_db)
    outside = client.post("/collections/waste_points/items", headers=auth,
                          json=_feature(point["elsewhere"], state="ok"))
    assert outside.status_code == 403 and "micro-grid" in outside.json()["description"]
    moved = client.patch(f"/collections/waste_points/items/{point['id']}",
                         headers={**auth, "If-Match": f'"{point["id"]}-{point["version"]}"'},
                         json={"type": "Feature", "geometry": {
                             "type": "Point", "coordinates": point["elsewhere"]}})
    assert moved.status_code == 403  # inside before, outside after
    other = login(client, f"worker-{point['other_grid']}")
    theirs = client.delete(f"/collections/waste_points/items/{point['id']}", headers={
        **other, "If-Match": f'"{point["id"]}-{point["version"]}"'})
    assert theirs.status_code == 403
    assert _changes(sample_db) == before
    refused = client.get("/edits?status=rejected", headers=login(client, "admin")).json()
    assert len(refused["edits"]) == 3  # kept for admins, with their reasons
    assert all(e["status"] == "rejected" for e in refused["edits"])


def test_a_point_on_the_border_of_two_grids_belongs_to_both(
        client: TestClient, sample_db: Database) -> None:
    a, b, x, y = sample_db.one("""
        SELECT a.props ->> 'code', b.props ->> 'code',
               ST_X(ST_PointOnSurface(ST_Intersection(a.geom, b.geom))),
               ST_Y(ST_PointOnSurface(ST_Intersection(a.geom, b.geom)))
          FROM twin.features a JOIN twin.features b
            ON b.layer = 'micro_grids' AND a.props ->> 'code' < b.props ->> 'code'
           AND ST_Relate(a.geom, b.geom, 'F***1****')
         WHERE a.layer = 'micro_grids' ORDER BY 1, 2 LIMIT 1""")
    for code in (a, b):
        made = client.post("/collections/waste_points/items", headers=login(
            client, f"worker-{code}"), json=_feature([x, y], state="ok"))
        assert made.status_code == 201, made.text


def test_roles_edit_their_layers_only(client: TestClient, point: dict[str, Any]) -> None:
    planner = login(client, "planner")
    refused = client.post("/collections/waste_points/items", headers=planner,
                          json=_feature(point["inside"], state="ok"))
    assert refused.status_code == 403 and "planner" in refused.json()["description"]
    grid = client.post("/collections/micro_grids/items", headers=login(
        client, point["worker"]), json=_feature(point["inside"]))
    assert grid.status_code == 403


def test_options_and_schema_describe_what_may_be_done(client: TestClient,
                                                      point: dict[str, Any]) -> None:
    items = client.options("/collections/waste_points/items")
    assert {"GET", "POST"} <= set(items.headers["allow"].split(", "))
    one = client.options(f"/collections/waste_points/items/{point['id']}")
    assert {"GET", "PUT", "PATCH", "DELETE"} <= set(one.headers["allow"].split(", "))
    schema = client.get("/collections/waste_points/schema",
                        headers=login(client, point["worker"])).json()
    assert schema["properties"]["state"]["enum"] == ["ok", "full", "damaged", "closed"]
    assert schema["x-twin"]["editable"] is True and schema["x-twin"]["max_gps_error_m"] == 20


def test_bad_requests_say_what_is_wrong(client: TestClient, point: dict[str, Any]) -> None:
    auth = login(client, point["worker"])
    url = f"/collections/waste_points/items/{point['id']}"
    assert client.post("/collections/waste_points/items", headers=auth,
                       content=b"{not json").status_code == 400
    assert client.post("/collections/waste_points/items", headers=auth,
                       json={"type": "Point"}).status_code == 422
    assert client.post("/collections/nowhere/items", headers=auth,
                       json=_feature(point["inside"])).status_code == 404
    assert client.patch(url, headers={**auth, "If-Match": '"1-1"'}, json={
        "type": "Feature", "properties": {}}).status_code == 412
    assert client.patch(url, headers={**auth, "If-Match": f'"{point["id"]}-1"'}, json={
        "type": "Feature", "properties": {}, "device_time": "yesterday"}).status_code == 422
    big = b'{"type": "Feature", "properties": {"name": "' + b"x" * 1_100_000 + b'"}}'
    assert client.post("/collections/waste_points/items", headers=auth,
                       content=big).status_code == 413
    assert client.post("/collections/waste_points/items",
                       json=_feature(point["inside"])).status_code == 401


MERGE = {"Content-Type": "application/merge-patch+json"}


def test_a_json_merge_patch_merges_and_null_takes_the_default(
        client: TestClient, sample_db: Database, point: dict[str, Any]) -> None:
    """RFC 7396: members merge (an object into an object: the geometry keeps its type), null
    removes (an optional attribute falls back to its default); a required one cannot go."""
    auth = {**login(client, point["worker"]), **MERGE}
    url = f"/collections/waste_points/items/{point['id']}"
    first = client.patch(url, headers={**auth, "If-Match": f'"{point["id"]}-{point["version"]}"'},
                         content=json.dumps({"properties": {"bins": 9, "off_hour": True}}))
    assert first.status_code == 200, first.text
    etag = first.headers["ETag"]
    merged = client.patch(url, headers={**auth, "If-Match": etag}, content=json.dumps({
        "properties": {"bins": None, "state": "full"},
        "geometry": {"coordinates": point["inside"]},  # merged into {"type": "Point", ...}
        "reason": "合并补丁 merge patch"}))
    assert merged.status_code == 200, merged.text
    feature = merged.json()
    assert feature["properties"]["bins"] == 4  # removed: the model's default
    assert feature["properties"]["state"] == "full" and feature["properties"]["off_hour"]
    assert feature["geometry"]["type"] == "Point"
    assert feature["geometry"]["coordinates"] == pytest.approx(point["inside"], abs=1e-7)
    assert sample_db.one("SELECT reason FROM twin.changes WHERE feature_id = :id "
                         "ORDER BY id DESC LIMIT 1", id=point["id"])[0] == "合并补丁 merge patch"
    building, version = sample_db.one("SELECT id, version FROM twin.features "
                                      "WHERE layer = 'buildings' ORDER BY id LIMIT 1")
    planner = {**login(client, "planner"), **MERGE, "If-Match": f'"{building}-{version}"'}
    required = client.patch(f"/collections/buildings/items/{building}", headers=planner,
                            content=json.dumps({"properties": {"floors": None}}))
    assert required.status_code == 422
    assert [(p["field"], p["reason_zh"]) for p in required.json()["problems"]] == [
        ("floors", "必填")]
    for body, field in [([1, 2], "body"), ({"type": "Point"}, "type"), ({"id": 1}, "id"),
                        ({"properties": None}, "properties")]:
        refused = client.patch(f"/collections/buildings/items/{building}", headers=planner,
                               content=json.dumps(body))
        assert refused.status_code == 422, body
        assert refused.json()["problems"][0]["field"] == field
        assert refused.json()["problems"][0]["reason_zh"]


def test_a_patch_says_what_its_body_is(client: TestClient, point: dict[str, Any]) -> None:
    auth = {**login(client, point["worker"]), "If-Match": f'"{point["id"]}-{point["version"]}"'}
    url = f"/collections/waste_points/items/{point['id']}"
    body = json.dumps({"type": "Feature", "properties": {"state": "full"}})
    unknown = client.patch(url, headers={**auth, "Content-Type": "text/plain"}, content=body)
    assert unknown.status_code == 415
    assert unknown.headers["Accept-Patch"].startswith("application/merge-patch+json")
    problem = unknown.json()["problems"][0]
    assert problem["field"] == "Content-Type" and problem["value"] == "text/plain"
    assert problem["reason_zh"] and "merge-patch" in unknown.json()["description"]
    missing = client.patch(url, headers=auth, content=body)
    assert missing.status_code == 400
    assert missing.json()["problems"][0]["field"] == "Content-Type"
    with_charset = client.patch(url, headers={
        **auth, "Content-Type": "application/geo+json; charset=utf-8"}, content=body)
    assert with_charset.status_code == 200, with_charset.text


def test_if_match_takes_the_etag_of_any_crs_and_compares_strongly(
        client: TestClient, point: dict[str, Any]) -> None:
    auth = login(client, point["worker"])
    url = f"/collections/waste_points/items/{point['id']}"
    read = client.get(f"{url}?crs=EPSG:4326", headers=auth)
    assert read.headers["ETag"] == f'"{point["id"]}-{point["version"]}-4326"'
    change = {"type": "Feature", "properties": {"state": "full"}}
    weak = client.patch(url, headers={**auth, "If-Match": f'W/"{point["id"]}-{point["version"]}"'},
                        json=change)
    assert weak.status_code == 412 and "weak" in weak.json()["description"]
    assert weak.json()["problems"][0]["reason_zh"]
    foreign = client.patch(url, headers={**auth, "If-Match": f'"{point["id"]}-1-9999"'},
                           json=change)
    assert foreign.status_code == 412  # no CRS Twin serves: not an ETag it gave
    changed = client.patch(url, headers={**auth, "If-Match": read.headers["ETag"]}, json=change)
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == f'"{point["id"]}-{point["version"] + 1}"'
    # a list matches when one of its strong ETags is of this feature's current version
    listed = client.patch(url, headers={**auth, "If-Match": f'"1-1", {changed.headers["ETag"]}'},
                          json={"type": "Feature", "properties": {"state": "ok"}})
    assert listed.status_code == 200, listed.text
    stale = client.patch(url, headers={**auth, "If-Match": read.headers["ETag"]}, json=change)
    assert stale.status_code == 412 and stale.json()["current_version"] == point["version"] + 2


def test_a_geometry_sent_in_another_crs_is_stored_in_crs84(
        client: TestClient, sample_db: Database, point: dict[str, Any]) -> None:
    """QGIS sends `Content-Crs` with a layer it reads in another CRS: EPSG:4326 is
    latitude first, Web Mercator in metres; both land where CRS84 would; an unknown CRS is
    refused and changes nothing."""
    from pyproj import Transformer

    auth = login(client, point["worker"])
    lon, lat = point["inside"]
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
    url = f"/collections/waste_points/items/{point['id']}"
    version = point["version"]
    for crs, xy in (("http://www.opengis.net/def/crs/EPSG/0/4326", [lat, lon]),
                    ("http://www.opengis.net/def/crs/EPSG/0/3857", [x, y])):
        done = client.patch(url, headers={**auth, "If-Match": f'"{point["id"]}-{version}"',
                                          "Content-Crs": f"<{crs}>"},
                            json={"type": "Feature", "geometry": {"type": "Point",
                                                                  "coordinates": xy}})
        assert done.status_code == 200, done.text
        version += 1
        stored = sample_db.one("SELECT ST_X(geom), ST_Y(geom) FROM twin.features "
                               "WHERE id = :id", id=point["id"])
        assert abs(stored[0] - lon) < 1e-7 and abs(stored[1] - lat) < 1e-7
    before = _changes(sample_db)
    refused = client.patch(url, headers={**auth, "If-Match": f'"{point["id"]}-{version}"',
                                         "Content-Crs": "<http://example.com/crs/42>"},
                           json={"type": "Feature", "geometry": {"type": "Point",
                                                                 "coordinates": [lon, lat]}})
    assert refused.status_code == 400 and "Content-Crs" in refused.text
    assert _changes(sample_db) == before
