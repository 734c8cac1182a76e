"""Siting over HTTP on the sample twin (real PostGIS): the sites chosen, checked against the
coverage the twin measures once facilities stand there; given candidates; bad parameters;
who may ask; the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Database, login, run_twin

URL = "/analysis/siting"


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return login(client, "planner")


def _post(client: TestClient, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, headers=auth, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _coverage(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    response = client.get("/analysis/coverage?layer=charging_points&state=safe", headers=auth)
    assert response.status_code == 200, response.text
    totals: dict[str, Any] = response.json()["totals"]
    return totals


def test_sites_along_the_streets_add_what_the_twin_then_measures(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    before = _coverage(client, auth)
    body = _post(client, auth, {"layer": "charging_points", "n": 5, "state": "safe",
                                "candidates": {"spacing_m": 50}})
    assert body["parameters"] == {"layer": "charging_points", "n": 5, "within_m": 200.0,
                                  "state": "safe", "tags": [],
                                  "candidates": {"spacing_m": 50.0}, "time_limit_s": 10.0,
                                  "as_of": None}
    assert body["twin"]["change_id"] > 0 and body["crs"] == "EPSG:32651"
    assert body["candidates"] > 100
    assert body["existing"]["covered_households"] == before["covered_households"]
    # the solver's answer: at least what the greedy alone found, with its gap reported
    assert body["method"] in ("exact", "greedy")
    for key in ("optimal", "gap", "greedy_gap", "greedy_households", "note", "bound"):
        assert key in body
    assert body["households_added"] >= body["greedy_households"] > 0
    assert 0 <= body["gap"] <= 1
    if body["optimal"]:
        assert body["gap"] == 0 and body["greedy_gap"] is not None
    sites = body["sites"]["features"]
    assert [s["properties"]["rank"] for s in sites] == [1, 2, 3, 4, 5]
    marginal = [s["properties"]["marginal_households"] for s in sites]
    assert sum(marginal) == body["households_added"]
    assert marginal == sorted(marginal, reverse=True)  # each the best addition to those before
    assert all(s["geometry"]["type"] == "Point" for s in sites)
    # put the hazardous points, made safe, where the sites are: coverage adds exactly that
    with sample_db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context('planner', 'planner', 'test', 'siting')"))
        movable = [r[0] for r in conn.execute(text(
            "SELECT id FROM twin.features WHERE layer = 'charging_points' "
            "AND props->>'state' <> 'safe' ORDER BY id LIMIT 5"))]
        assert len(movable) == 5
        for fid, feature in zip(movable, sites, strict=True):
            lon, lat = feature["geometry"]["coordinates"]
            conn.execute(text(
                "UPDATE twin.features SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), "
                "props = props || '{\"state\": \"safe\"}' WHERE id = :id"),
                {"lon": lon, "lat": lat, "id": fid})
    after = _coverage(client, auth)
    assert after["covered_households"] == before["covered_households"] + body[
        "households_added"]
    assert after["facilities"] == before["facilities"] + 5


def test_given_candidates_are_the_ones_used(client: TestClient, auth: dict[str, str]) -> None:
    along = _post(client, auth, {"layer": "charging_points", "n": 3, "state": "safe",
                                 "time_limit_s": 5})
    best = [f["geometry"]["coordinates"] for f in along["sites"]["features"]]
    # a poorer site first, then the three best: two are to be chosen among these four
    given = [[121.5100, 31.1950], *best]
    body = _post(client, auth, {"layer": "charging_points", "n": 2, "state": "safe",
                                "candidates": given})
    assert body["candidates"] == 4
    assert body["parameters"]["candidates"] == {"given": 4}
    chosen = [f["geometry"]["coordinates"] for f in body["sites"]["features"]]
    assert all(point in given for point in chosen)
    # the exact pair is at least as good as the earlier answer's first two
    assert body["households_added"] >= sum(
        f["properties"]["marginal_households"] for f in along["sites"]["features"][:2])
    # within is honoured: measured at 100 m, the existing points cover fewer households
    near = _post(client, auth, {"layer": "charging_points", "n": 2, "state": "safe",
                                "within": 100, "candidates": given})
    assert near["parameters"]["within_m"] == 100.0
    assert near["existing"]["covered_households"] < body["existing"]["covered_households"]
    assert all(f["geometry"]["coordinates"] in given for f in near["sites"]["features"])


@pytest.mark.parametrize(("body", "field"), [
    ({"layer": "nowhere", "n": 3}, "layer"),
    ({"layer": "streets", "n": 3}, "layer"),
    ({"n": 3}, "layer"),
    ({"layer": "charging_points", "n": 0}, "n"),
    ({"layer": "charging_points", "n": -2}, "n"),
    ({"layer": "charging_points", "n": "five"}, "n"),
    ({"layer": "charging_points"}, "n"),
    ({"layer": "charging_points", "n": 3, "candidates": [[121.51, 31.19], [121.512, 31.192]]},
     "n"),
    ({"layer": "charging_points", "n": 100000}, "n"),
    ({"layer": "charging_points", "n": 3, "within": -5}, "within"),
    ({"layer": "charging_points", "n": 3, "within": "far"}, "within"),
    ({"layer": "charging_points", "n": 3, "state": "broken"}, "state"),
    ({"layer": "charging_points", "n": 1, "candidates": [[31.19, 121.51]]}, "candidates[0]"),
    ({"layer": "charging_points", "n": 1, "candidates": [[121.51, 31.19, 4]]},
     "candidates[0]"),
    ({"layer": "charging_points", "n": 1, "candidates": [["121.51", "31.19"]]},
     "candidates[0]"),
    ({"layer": "charging_points", "n": 1, "candidates": [[0.0, 0.0]]}, "candidates[0]"),
    ({"layer": "charging_points", "n": 1, "candidates": []}, "candidates"),
    ({"layer": "charging_points", "n": 1, "candidates": "streets"}, "candidates"),
    ({"layer": "charging_points", "n": 3, "candidates": {"spacing_m": 0}},
     "candidates.spacing_m"),
    ({"layer": "charging_points", "n": 3, "candidates": {"spacing_m": -50}},
     "candidates.spacing_m"),
    ({"layer": "charging_points", "n": 3, "time_limit_s": 100}, "time_limit_s"),
    ({"layer": "charging_points", "n": 3, "radius": 100}, "radius"),
    ({"layer": "charging_points", "n": 3, "as_of": "soon"}, "as_of"),
])
def test_bad_parameters_are_422_naming_the_field(client: TestClient, auth: dict[str, str],
                                                 body: dict[str, Any], field: str) -> None:
    response = client.post(URL, headers=auth, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert field in [p["field"] for p in answer["problems"]], answer
    assert "Traceback" not in response.text


def test_who_may_ask(client: TestClient, sample_db: Database) -> None:
    body = {"layer": "charging_points", "n": 1, "time_limit_s": 2}
    with sample_db.app.connect() as conn:
        grid = conn.execute(text("SELECT props->>'code' FROM twin.features "
                                 "WHERE layer = 'micro_grids' ORDER BY id LIMIT 1")).scalar()
    assert client.post(URL, headers=login(client, f"worker-{grid}"), json=body
                       ).status_code == 403
    assert client.post(URL, json=body).status_code == 401
    for role in ("commander", "admin"):
        assert client.post(URL, headers=login(client, role), json=body).status_code == 200
    not_json = client.post(URL, headers={**login(client, "planner"),
                                         "Content-Type": "application/json"}, content=b"{n")
    assert not_json.status_code in (400, 422)


def test_the_cli_prints_the_sites(sample_db: Database) -> None:
    done = run_twin("siting", "charging_points", "--n", "4", "--state", "safe",
                    "--time-limit", "5", env=sample_db.env())
    assert done.returncode == 0, done.stderr
    assert "Siting" in done.stdout and "optimal" in done.stdout
    as_json = run_twin("siting", "charging_points", "--n", "4", "--state", "safe",
                       "--spacing", "80", "--json", env=sample_db.env())
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert len(body["sites"]["features"]) == 4
    assert body["parameters"]["candidates"] == {"spacing_m": 80.0}
    bad = run_twin("siting", "charging_points", "--n", "0", env=sample_db.env())
    assert bad.returncode == 1 and "n" in bad.stderr and "Traceback" not in bad.stderr
