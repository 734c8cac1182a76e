"""Subdistricts as a dimension: every feature, change, case and order names the subdistrict it
lies in, derived from the outlines like its micro-grid; redrawing outlines re-derives them
through the log; key figures and case rates group by subdistrict; a subdistrict's command
centre sees its own subdistrict's work, the district's sees all."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.cases.steps import a_place, photo, report, through
from tests.conftest import DEMO_PASSWORD, Database, login, run_twin

HOME = "310115010"  # the sample's subdistrict (data/nanmatou.toml)
EAST = "310115099"  # a made-up code for the half the test splits off


def _split(sample_db: Database, client: TestClient) -> dict[str, Any]:
    """The admin redraws the sample's one outline as its west half and adds the east half as
    a subdistrict of its own, through the API; what lies east moves to it."""
    admin = login(client, "admin")
    # the east half: the residential areas east of the middle, whole (a committee's area,
    # and so its grids, lies in one subdistrict)
    fid, version, west, east = sample_db.one(f"""
        WITH o AS (SELECT id, version, geom, (ST_XMin(geom) + ST_XMax(geom)) / 2 AS mid
                     FROM twin.features
                    WHERE layer = 'subdistricts' AND props ->> 'code' = '{HOME}'),
             h AS (SELECT ST_X(ST_PointOnSurface(g.geom)) > o.mid AS east,
                          ST_ReducePrecision(ST_Union(g.geom), 1e-7) AS geom
                     FROM twin.features g, o WHERE g.layer = 'residential_areas' GROUP BY 1)
        SELECT o.id, o.version,
               (SELECT ST_AsGeoJSON(ST_Multi(geom), 7) FROM h WHERE NOT east),
               (SELECT ST_AsGeoJSON(ST_Multi(geom), 7) FROM h WHERE east)
          FROM o""")
    url = f"/collections/subdistricts/items/{fid}"
    redrawn = client.put(url, headers={**admin, "If-Match": f'"{fid}-{version}"'}, json={
        "type": "Feature", "geometry": json.loads(west),
        "properties": {"code": HOME, "name": "南码头路街道（西）"}})
    assert redrawn.status_code == 200, redrawn.text
    added = client.post("/collections/subdistricts/items", headers=admin, json={
        "type": "Feature", "geometry": json.loads(east),
        "properties": {"code": EAST, "name": "东片 East"}})
    assert added.status_code == 201, added.text
    return admin


def test_the_sample_places_everything_in_its_subdistrict(sample_db: Database) -> None:
    outlines = sample_db.rows("SELECT props ->> 'code', name FROM twin.features "
                              "WHERE layer = 'subdistricts'")
    assert outlines == [(HOME, "南码头路街道")]
    placed = dict(sample_db.rows(
        "SELECT coalesce(subdistrict_code, 'none'), count(*) FROM twin.features "
        "WHERE layer NOT IN ('water') GROUP BY 1"))
    assert set(placed) == {HOME} and placed[HOME] > 6000
    missing, total = sample_db.one(
        f"SELECT count(*) FILTER (WHERE subdistrict_code IS DISTINCT FROM '{HOME}'), "
        "count(*) FROM twin.changes WHERE grid_code IS NOT NULL")
    assert total > 6000 and missing == 0
    versions = sample_db.scalar("SELECT count(*) FROM twin.feature_versions "
                                f"WHERE subdistrict_code = '{HOME}'")
    assert versions > 6000


def test_redrawn_outlines_move_features_and_open_cases_and_the_log_says_so(
        sample_db: Database, client: TestClient) -> None:
    grids = [r[0] for r in sample_db.rows("SELECT props ->> 'code' FROM twin.features "
                                          "WHERE layer = 'micro_grids' ORDER BY id")]
    for grid in grids[::20]:  # open cases across the subdistrict, reported before the split
        lon, lat, _ = a_place(sample_db, grid)
        report(sample_db, None, lon, lat)
    assert sample_db.scalar("SELECT count(DISTINCT subdistrict_code) FROM twin.cases") == 1
    before = sample_db.scalar("SELECT max(id) FROM twin.changes")
    _split(sample_db, client)
    east = sample_db.one(
        f"SELECT count(*) FILTER (WHERE subdistrict_code = '{EAST}'), "
        f"count(*) FILTER (WHERE subdistrict_code = '{HOME}') FROM twin.features "
        "WHERE layer = 'buildings'")
    assert east[0] > 500 and east[1] > 500
    # each building is where its outline says, and the log recorded every move
    wrong = sample_db.scalar(
        "SELECT count(*) FROM twin.features f WHERE f.layer = 'buildings' "
        "AND f.subdistrict_code IS DISTINCT FROM twin.code_at('subdistricts', f.geom)")
    assert wrong == 0
    logged = sample_db.scalar(
        "SELECT count(DISTINCT feature_id) FROM twin.changes WHERE id > :b "
        f"AND layer = 'buildings' AND subdistrict_code = '{EAST}' "
        "AND reason LIKE 'reassigned: subdistricts%%'", b=before)
    assert logged == east[0]
    open_cases = sample_db.one(
        f"SELECT count(*) FILTER (WHERE subdistrict_code = '{EAST}'), "
        "count(*) FILTER (WHERE subdistrict_code IS DISTINCT FROM "
        "twin.code_at('subdistricts', geom)) FROM twin.cases "
        "WHERE state IN ('reported', 'filed', 'dispatched', 'handled', 'parked')")
    assert open_cases[0] > 0 and open_cases[1] == 0


def test_a_subdistricts_command_centre_sees_its_own_the_districts_sees_all(
        sample_db: Database, client: TestClient) -> None:
    _split(sample_db, client)
    digest = photo(sample_db)
    for code, n in ((EAST, 1), (HOME, 2)):
        grid = sample_db.scalar("SELECT min(props ->> 'code') FROM twin.features WHERE "
                                f"layer = 'micro_grids' AND subdistrict_code = '{code}'")
        lon, lat, _ = a_place(sample_db, grid)
        for day in range(n):
            through(sample_db, lon, lat, [f"2026-03-0{2 + day}T{h}:00:00+08:00"
                                          for h in ("09", "10", "11", "14", "15")], digest)
    env = {**sample_db.env(), "TWIN_PASSWORD": DEMO_PASSWORD}
    made = run_twin("user", "add", "east-centre", "--role", "commander", "--subdistrict", EAST,
                    env=env)
    assert made.returncode == 0, made.stderr
    assert f"in subdistrict {EAST}" in made.stdout
    wrong = run_twin("user", "add", "nowhere", "--role", "commander", "--subdistrict", "999",
                     env=env)
    assert wrong.returncode != 0 and "subdistrict" in wrong.stderr + wrong.stdout
    assert sample_db.scalar("SELECT count(*) FROM twin.users WHERE name = 'nowhere'") == 0
    district, mine = login(client, "commander"), login(client, "east-centre")

    by_sub = client.get("/kpis", params={"by": "subdistrict"}, headers=district)
    assert by_sub.status_code == 200, by_sub.text
    groups = {g["code"]: g for g in by_sub.json()["groups"]}
    assert set(groups) == {HOME, EAST} and groups[EAST]["name"] == "东片 East"
    own = client.get("/kpis", params={"by": "subdistrict"}, headers=mine).json()["groups"]
    assert [g["code"] for g in own if g["states"]] == [EAST]
    east_grids = {r[0] for r in sample_db.rows(
        "SELECT props ->> 'code' FROM twin.features WHERE layer = 'micro_grids' "
        f"AND subdistrict_code = '{EAST}'")}
    grids = {g["code"] for g in client.get("/kpis", headers=mine).json()["groups"]
             if g["states"]}
    assert grids and grids <= east_grids

    whole_year = {"from": "2025-12-01", "to": "2027-01-01", "by": "subdistrict"}
    report = client.get("/reports/changes", params=whole_year, headers=district)
    assert report.status_code == 200, report.text
    assert {HOME, EAST} <= {g["subdistrict"] for g in report.json()["groups"]}
    assert {g["subdistrict"] for g in client.get("/reports/changes", params=whole_year,
                                                 headers=mine).json()["groups"]} == {EAST}

    period = {"from": "2026-03-01", "to": "2026-04-01"}
    whole = client.get("/cases/kpis", params={**period, "by": "subdistrict"}, headers=district)
    assert whole.status_code == 200, whole.text
    assert {g["key"]: g["filed"] for g in whole.json()["groups"]} == {HOME: 2, EAST: 1}
    seen = client.get("/cases/kpis", params=period, headers=mine).json()["total"]
    assert (seen["filed"], seen["closed"]) == (1, 1)
    cases = client.get("/cases", params={"limit": 1000}, headers=mine).json()["features"]
    assert len(cases) == 1 and cases[0]["properties"]["micro_grid"] in east_grids
    assert len(client.get("/cases", params={"limit": 1000}, headers=district).json()[
        "features"]) == 3
