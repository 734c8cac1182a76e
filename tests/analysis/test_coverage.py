"""Coverage of the sample twin through HTTP and the CLI, checked against SQL."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Database, login, run_twin

LAYERS = ("streets", "fire_passages", "buildings", "residential_areas", "waste_points")


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return login(client, "planner")



def _edit(db: Database, sql: str, **params: Any) -> None:
    with db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context('planner', 'planner', 'test', 'coverage')"))
        conn.execute(text(sql), params)


def _get(client: TestClient, auth: dict[str, str], url: str) -> dict[str, Any]:
    response = client.get(url, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_coverage_of_the_sample_twin_adds_up_with_sql(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    body = _get(client, auth, "/analysis/coverage?layer=waste_points")
    buildings, households, elderly = sample_db.one(
        "SELECT count(*), sum((props->>'households')::int), "
        "sum((props->>'elderly')::int) FROM twin.features WHERE layer = 'buildings'")
    totals = body["totals"]
    assert body["parameters"] == {"layer": "waste_points", "within_m": 120.0, "by": "grid",
                                  "state": None, "tags": [], "as_of": None}
    assert body["crs"] == "EPSG:32651"
    assert (totals["buildings"], totals["households"], totals["elderly"]) == (
        buildings, households, elderly)
    assert totals["facilities"] == sample_db.one(
        "SELECT count(*) FROM twin.features WHERE layer = 'waste_points'")[0]
    assert 0 < totals["covered_buildings"] < buildings
    assert totals["covered_share"] == round(totals["covered_buildings"] / buildings, 4)
    # the twin's moment: the newest change of every layer read
    last = sample_db.one("SELECT max(id) FROM twin.changes WHERE layer = ANY(:l)",
                l=list(LAYERS))[0]
    assert body["twin"]["change_id"] == last
    # groups: every micro-grid holding buildings, summing to the totals
    grids = sample_db.one("SELECT count(DISTINCT grid_code) FROM twin.features "
                 "WHERE layer = 'buildings'")[0]
    assert len(body["groups"]) == grids
    for key in ("buildings", "covered_buildings", "households", "covered_households",
                "elderly", "covered_elderly"):
        assert sum(g[key] for g in body["groups"]) == totals[key], key
    # uncovered buildings: GeoJSON, each beyond the distance, the rest within it
    uncovered = body["uncovered"]
    assert uncovered["type"] == "FeatureCollection"
    assert len(uncovered["features"]) == buildings - totals["covered_buildings"]
    first = uncovered["features"][0]
    assert first["geometry"]["type"] == "Polygon"
    assert first["properties"]["covered"] is False
    assert all(f["properties"]["distance_m"] is None or f["properties"]["distance_m"] > 120
               for f in uncovered["features"])
    assert sum(f["properties"]["households"] for f in uncovered["features"]) == (
        households - totals["covered_households"])
    # one building's answer measures the distance however far, and agrees
    one = _get(client, auth, f"/analysis/coverage/buildings/{first['id']}?layer=waste_points")
    assert one["building"]["covered"] is False and one["building"]["distance_m"] > 120
    assert one["twin"]["change_id"] == last


def test_by_area_and_a_state_filter(client: TestClient, auth: dict[str, str],
                                    sample_db: Database) -> None:
    body = _get(client, auth, "/analysis/coverage?layer=charging_points&state=safe&by=area")
    assert body["parameters"]["within_m"] == 200.0  # the layer's default
    assert body["totals"]["facilities"] == sample_db.one(
        "SELECT count(*) FROM twin.features WHERE layer = 'charging_points' "
        "AND props->>'state' = 'safe'")[0]
    codes = {g["code"] for g in body["groups"]}
    assert codes == {row for (row,) in sample_db.rows(
        "SELECT DISTINCT area_code FROM twin.features WHERE layer = 'buildings'")}
    assert all(g["name"].endswith("居委会") for g in body["groups"])
    everyone = _get(client, auth, "/analysis/coverage?layer=charging_points&by=area")
    assert everyone["totals"]["facilities"] > body["totals"]["facilities"]
    assert (everyone["totals"]["covered_buildings"] >= body["totals"]["covered_buildings"])
    farther = _get(client, auth, "/analysis/coverage?layer=charging_points&state=safe"
                   "&within=400")
    assert farther["totals"]["covered_buildings"] > body["totals"]["covered_buildings"]
    below = _get(client, auth, "/analysis/coverage?layer=charging_points&tags=地下空间,"
                 "class=公用设施")
    assert below["parameters"]["tags"] == ["地下空间", "class=公用设施"]
    assert below["totals"]["facilities"] == sample_db.one(
        "SELECT count(*) FROM twin.features WHERE layer = 'charging_points' "
        "AND tags @> ARRAY['地下空间', 'class=公用设施']")[0] > 0


def test_every_parameter_that_changes_the_answer_changes_it(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    """The distances are kept in memory between requests; the grouping and the threshold of
    each answer are its own request's, whichever was asked first."""
    areas = {row for (row,) in sample_db.rows(
        "SELECT DISTINCT area_code FROM twin.features WHERE layer = 'buildings'")}
    grids = {row for (row,) in sample_db.rows(
        "SELECT DISTINCT grid_code FROM twin.features WHERE layer = 'buildings'")}
    url = "/analysis/coverage?layer=waste_points&within=130&uncovered=false"
    answers = [_get(client, auth, f"{url}&by={by}") for by in ("grid", "area", "grid")]
    for answer, (by, codes) in zip(answers, (("grid", grids), ("area", areas),
                                             ("grid", grids)), strict=True):
        assert answer["parameters"]["by"] == by
        assert {g["code"] for g in answer["groups"]} == codes
        assert ("name" in answer["groups"][0]) == (by == "area")
    assert answers[0] == answers[2]
    assert answers[0]["totals"] == answers[1]["totals"]
    # and the other way round, for another layer; the default grouping is the grid
    first = _get(client, auth, "/analysis/coverage?layer=charging_points&by=area")
    then = _get(client, auth, "/analysis/coverage?layer=charging_points")
    assert {g["code"] for g in first["groups"]} == areas
    assert {g["code"] for g in then["groups"]} == grids
    # what-if speaks of its own grouping too
    lon, lat = sample_db.one("SELECT ST_X(ST_PointOnSurface(geom)), "
                    "ST_Y(ST_PointOnSurface(geom)) FROM twin.features "
                    "WHERE layer = 'streets' ORDER BY id LIMIT 1")
    for by, codes in (("area", areas), ("grid", grids)):
        what = _get(client, auth, f"/analysis/coverage/what-if?layer=charging_points&by={by}"
                    f"&at={lon},{lat}")
        assert what["parameters"]["by"] == by
        assert {g["code"] for g in what["groups"]} <= codes
    # fire access: the grouping of each request, whichever came first
    fire = [_get(client, auth, f"/analysis/fire-access?by={by}") for by in ("area", "grid")]
    assert {g["code"] for g in fire[0]["groups"]} == areas
    assert {g["code"] for g in fire[1]["groups"]} == grids



def test_an_edit_changes_the_next_answer(client: TestClient, auth: dict[str, str],
                                         sample_db: Database) -> None:
    url = "/analysis/coverage?layer=waste_points"
    before = _get(client, auth, url)
    assert _get(client, auth, url) == before  # nothing changed: the same answer
    # an uncovered building close to its street gets a waste point moved to its door
    lonely = min(before["uncovered"]["features"], key=lambda f: f["properties"]["snap_m"])
    point = sample_db.one("SELECT id FROM twin.features WHERE layer = 'waste_points' "
                 "ORDER BY id LIMIT 1")[0]
    _edit(sample_db, "UPDATE twin.features SET geom = (SELECT ST_PointOnSurface(geom) "
          "FROM twin.features WHERE id = :b) WHERE id = :p", b=lonely["id"], p=point)
    after = _get(client, auth, url)
    assert after["twin"]["change_id"] > before["twin"]["change_id"]
    assert lonely["id"] not in {f["id"] for f in after["uncovered"]["features"]}
    one = _get(client, auth, f"/analysis/coverage/buildings/{lonely['id']}?layer=waste_points")
    assert one["building"]["covered"] is True
    assert one["building"]["nearest_facility"] == point
    # closing every waste point leaves no building covered when only working ones count
    _edit(sample_db, "UPDATE twin.features SET props = props || '{\"state\": \"closed\"}' "
          "WHERE layer = 'waste_points'")
    closed = _get(client, auth, url + "&state=ok")
    assert closed["totals"]["facilities"] == 0
    assert closed["totals"]["covered_buildings"] == 0


def test_as_of_a_moment_gives_the_twin_as_it_was(client: TestClient, auth: dict[str, str],
                                                  sample_db: Database) -> None:
    url = "/analysis/coverage?layer=waste_points"
    before = _get(client, auth, url)
    moment = sample_db.one("SELECT max(server_time) FROM twin.changes")[0]
    # every waste point but one removed: coverage collapses now, not as of the moment before
    _edit(sample_db, "DELETE FROM twin.features WHERE layer = 'waste_points' "
          "AND id > (SELECT min(id) FROM twin.features WHERE layer = 'waste_points')")
    now = _get(client, auth, url)
    assert now["totals"]["facilities"] == 1
    then = _get(client, auth, f"{url}&asOf={quote(moment.isoformat())}")
    assert then["twin"] == before["twin"] | {"as_of": moment.isoformat()}
    assert then["parameters"]["as_of"] == moment.isoformat()
    for part in ("totals", "groups", "uncovered", "network"):
        assert then[part] == before[part], part
    lonely = then["uncovered"]["features"][0]["id"]
    one = _get(client, auth, f"/analysis/coverage/buildings/{lonely}?layer=waste_points"
               f"&asOf={quote(moment.isoformat())}")
    assert one["building"]["covered"] is False and one["twin"]["as_of"] == moment.isoformat()
    bad = client.get(f"{url}&asOf=yesterday", headers=auth)
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "asOf"


def test_a_blocked_passage_leaves_the_network(client: TestClient, auth: dict[str, str],
                                              sample_db: Database) -> None:
    url = "/analysis/coverage?layer=waste_points&service_areas=true"
    before = _get(client, auth, url)
    _edit(sample_db, "UPDATE twin.features SET props = props || '{\"state\": \"blocked\"}' "
          "WHERE layer = 'fire_passages'")
    after = _get(client, auth, url)
    assert after["network"]["open_passages"] == 0 < before["network"]["open_passages"]
    assert after["network"]["edges"] < before["network"]["edges"]
    areas = after["service_areas"]
    assert len(areas["features"]) == after["totals"]["facilities"]
    for feature in areas["features"][:20]:
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
        ring = feature["geometry"]["coordinates"][0]
        ring = ring[0] if feature["geometry"]["type"] == "MultiPolygon" else ring
        assert all(121.4 < x < 121.7 and 31.1 < y < 31.3 for x, y in ring)


def test_what_if_equals_the_coverage_once_the_facility_is_there(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    url = "/analysis/coverage?layer=waste_points"
    before = _get(client, auth, url)
    lonely = min(before["uncovered"]["features"], key=lambda f: f["properties"]["snap_m"])
    lon, lat = sample_db.one("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) "
                    "AS p FROM twin.features WHERE id = :b) x", b=lonely["id"])
    asked = _get(client, auth, f"/analysis/coverage/what-if?layer=waste_points&at={lon},{lat}")
    assert asked["twin"] == before["twin"] and asked["before"] == before["totals"]
    newly = asked["newly_covered"]["features"]
    assert lonely["id"] in {f["id"] for f in newly}
    assert asked["gained"]["buildings"] == len(newly) > 0
    assert asked["gained"]["households"] == sum(f["properties"]["households"] for f in newly)
    assert all(f["properties"]["distance_m"] <= 120 for f in newly)
    # the same point made a real waste point: the coverage recomputed agrees exactly
    _edit(sample_db, "INSERT INTO twin.features (layer, name, props, geom) VALUES "
          "('waste_points', 'what-if', '{\"state\": \"ok\"}', "
          "ST_SetSRID(ST_MakePoint(:x, :y), 4326))", x=lon, y=lat)
    after = _get(client, auth, url)
    assert asked["after"] == after["totals"]
    now = {g["code"]: g for g in after["groups"]}
    assert asked["groups"] and all(
        g["after"] == {k: v for k, v in now[g["code"]].items() if k not in ("code", "name")}
        for g in asked["groups"])
    gone = {f["id"] for f in before["uncovered"]["features"]} - {
        f["id"] for f in after["uncovered"]["features"]}
    assert gone == {f["id"] for f in newly}


@pytest.mark.parametrize(("query", "field"), [
    ("coverage?layer=nowhere", "layer"),
    ("coverage?layer=streets", "layer"),
    ("coverage?", "layer"),
    ("coverage?layer=waste_points&within=-5", "within"),
    ("coverage?layer=waste_points&within=0", "within"),
    ("coverage?layer=waste_points&within=abc", "within"),
    ("coverage?layer=waste_points&within=nan", "within"),
    ("coverage?layer=waste_points&by=street", "by"),
    ("coverage?layer=waste_points&state=broken", "state"),
    ("coverage?layer=waste_points&tags=nonsense", "tags"),
    ("coverage?layer=waste_points&radius=100", "radius"),
    ("coverage?layer=waste_points&service_areas=yes", "service_areas"),
    ("coverage/what-if?layer=waste_points", "at"),
    ("coverage/what-if?layer=waste_points&at=121.5", "at"),
    ("coverage/what-if?layer=waste_points&at=east,north", "at"),
    ("coverage/what-if?layer=waste_points&at=200,31", "at"),
    ("coverage/what-if?layer=nowhere&at=121.5,31.2", "layer"),
    ("coverage/what-if?layer=waste_points&at=121.5,31.2&within=-1", "within"),
])
def test_bad_parameters_are_422_naming_the_field(client: TestClient, auth: dict[str, str],
                                                 query: str, field: str) -> None:
    response = client.get(f"/analysis/{query}", headers=auth)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "InvalidValue"
    assert field in [p["field"] for p in body["problems"]]
    assert "Traceback" not in response.text


def test_one_building_unknown_is_404_and_workers_are_refused(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    assert client.get("/analysis/coverage/buildings/999999?layer=waste_points",
                      headers=auth).status_code == 404
    bad = client.get("/analysis/coverage/buildings/1?layer=waste_points&within=-1",
                     headers=auth)
    assert bad.status_code == 422
    grid = sample_db.one("SELECT props->>'code' FROM twin.features "
                "WHERE layer = 'micro_grids' ORDER BY id LIMIT 1")[0]
    worker = login(client, f"worker-{grid}")
    assert client.get("/analysis/coverage?layer=waste_points", headers=worker
                      ).status_code == 403
    assert client.get("/analysis/coverage/buildings/1?layer=waste_points", headers=worker
                      ).status_code == 403
    for role in ("commander", "admin"):
        assert client.get("/analysis/coverage?layer=waste_points",
                          headers=login(client, role)).status_code == 200
    assert client.get("/analysis/coverage?layer=waste_points").status_code == 401


def test_the_cli_prints_a_table_and_json(sample_db: Database) -> None:
    done = run_twin("coverage", "waste_points", "--by", "area", env=sample_db.env())
    assert done.returncode == 0, done.stderr
    assert "合计 total" in done.stdout and "4,500" in done.stdout
    assert "西三里桥居委会" in done.stdout
    as_json = run_twin("coverage", "charging_points", "--state", "safe", "--within", "150",
                       "--json", env=sample_db.env())
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["parameters"]["within_m"] == 150.0
    assert body["totals"]["buildings"] == 4500
    bad = run_twin("coverage", "streets", env=sample_db.env())
    assert bad.returncode == 1 and "point layers" in bad.stderr
    assert "Traceback" not in bad.stderr
