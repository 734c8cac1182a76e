"""Fire access over HTTP on the sample twin (real PostGIS): totals against SQL, the blocked
passages' ranking checked by opening and blocking the top one, parameters, roles, the CLI."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import LineString
from sqlalchemy import text

from tests.conftest import Database, login, run_twin
from twin.analysis.coverage import Buildings
from twin.analysis.fire import FireQuery, compute, fire_network
from twin.analysis.network import Frame

URL = "/analysis/fire-access"


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return login(client, "planner")


def _get(client: TestClient, auth: dict[str, str], url: str = URL) -> dict[str, Any]:
    response = client.get(url, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _edit(db: Database, sql: str, **params: Any) -> None:
    with db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context('planner', 'planner', 'test', 'fire')"))
        conn.execute(text(sql), params)


def _buildings(points: list[tuple[float, float]], households: list[int]) -> Buildings:
    k = len(points)
    return Buildings(
        ids=np.arange(1, k + 1, dtype=np.int64), households=np.array(households),
        elderly=np.zeros(k, dtype=np.int64), grids=["g"] * k, areas=["a"] * k,
        subdistricts=["s"] * k,
        addresses=[None] * k, geojson=['{"type": "Point", "coordinates": [0, 0]}'] * k,
        snapped=None,  # type: ignore[arg-type]  # fire access measures from xy
        area_names={}, index={}, xy=np.array(points, dtype=np.float64))


def test_a_hand_made_compound_behind_a_blocked_passage() -> None:
    """A main road along y = 0 and a passage from it up x = 200 to a compound whose inner
    passage runs along y = 100; four buildings, reach 60 m."""
    main_road = LineString([(0, 0), (400, 0)])
    side = LineString([(0, 0), (0, 300)])
    gate = LineString([(200, 0), (200, 100)])
    inner = LineString([(200, 100), (320, 100)])
    buildings = _buildings([(300, 120), (100, 30), (20, 250), (210, 50)], [40, 10, 7, 3])
    frame = Frame(32651)

    def answer(blocked: list[bool]) -> Any:
        fire = fire_network([main_road], [20.0], [True], [gate, inner], blocked, frame)
        return compute(fire, buildings, FireQuery(60.0), {})

    open_ = answer([False, False])
    # 20 m from the inner passage, 30 m from the main road, 234 m from the compound's corner,
    # 10 m from the gate
    corner = np.hypot(180, 150)
    assert open_.distance.tolist() == pytest.approx([20.0, 30.0, corner, 10.0])
    assert open_.unreachable.tolist() == [False, False, True, False]
    assert open_.ranking == []
    shut = answer([True, False])  # the gate blocked: the inner passage is cut off
    assert shut.distance.tolist() == pytest.approx([120.0, 30.0, 250.0, 50.0])
    assert shut.unreachable.tolist() == [True, False, True, False]
    assert [(r["restores_buildings"], r["restores_households"], r["buildings"])
            for r in shut.ranking] == [(1, 40, [1])]
    assert shut.totals()["unreachable_households"] == 47
    # blocked inner passage, open gate: the gate alone reaches within 60 m of building 1
    assert answer([False, True]).distance[0] == pytest.approx(np.hypot(100, 20))
    # no main road: engines enter the largest connected part, here the gate and the inner
    # passage (two pieces) rather than a lone street up x = 0 (one piece)
    lonely = fire_network([side], [8.0], [False], [gate, inner], [False, False], frame)
    assert lonely.entry == "largest component"
    far = compute(lonely, buildings, FireQuery(60.0), {})
    assert far.distance.tolist() == pytest.approx([20.0, 100.0, corner, 10.0])


def test_fire_access_of_the_sample_twin_adds_up(client: TestClient, auth: dict[str, str],
                                                sample_db: Database) -> None:
    body = _get(client, auth)
    assert body["parameters"] == {"reach_m": 60.0, "by": "grid", "as_of": None}
    with sample_db.app.connect() as conn:
        buildings, households, blocked = conn.execute(text(
            "SELECT (SELECT count(*) FROM twin.features WHERE layer = 'buildings'), "
            "(SELECT sum((props->>'households')::int) FROM twin.features "
            " WHERE layer = 'buildings'), "
            "(SELECT count(*) FROM twin.features WHERE layer = 'fire_passages' "
            " AND props->>'state' = 'blocked')")).one()
    totals = body["totals"]
    assert (totals["buildings"], totals["households"]) == (buildings, households)
    assert 0 < totals["unreachable_buildings"] < buildings
    assert body["network"]["entry"] == "main roads"
    assert body["network"]["blocked_passages"] == blocked == len(body["blocked_passages"])
    for key in ("buildings", "unreachable_buildings", "households", "unreachable_households",
                "elderly", "unreachable_elderly"):
        assert sum(g[key] for g in body["groups"]) == totals[key], key
    out = body["unreachable"]["features"]
    assert len(out) == totals["unreachable_buildings"]
    assert sum(f["properties"]["households"] for f in out) == totals["unreachable_households"]
    # beyond the reach, but for the centimetres the answer rounds to
    assert all(f["properties"]["distance_m"] is None or f["properties"]["distance_m"] >= 60
               for f in out)
    ranks = body["blocked_passages"]
    assert [r["rank"] for r in ranks] == list(range(1, len(ranks) + 1))
    claimed = [r["restores_households"] for r in ranks]
    assert claimed == sorted(claimed, reverse=True)
    unreachable_ids = {f["id"] for f in out}
    assert all(set(r["buildings"]) <= unreachable_ids for r in ranks)
    # a longer hose reaches more; per area too; the same twin answers the same
    longer = _get(client, auth, URL + "?reach=120&by=area")
    assert longer["totals"]["unreachable_buildings"] < totals["unreachable_buildings"]
    assert {g["code"] for g in longer["groups"]} and all(g["name"] for g in longer["groups"])
    assert _get(client, auth) == body


def test_opening_the_top_passage_restores_what_it_claimed_and_blocking_undoes_it(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    before = _get(client, auth)
    top = before["blocked_passages"][0]
    assert top["restores_households"] > 0 and top["buildings"]
    with sample_db.app.connect() as conn:
        moment = conn.execute(text("SELECT max(server_time) FROM twin.changes")).scalar_one()
    # opened in SQL: the next answer has those buildings reachable, the households restored
    _edit(sample_db, "UPDATE twin.features SET props = props || '{\"state\": \"open\"}' "
          "WHERE id = :id", id=top["id"])
    opened = _get(client, auth)
    assert opened["twin"]["change_id"] > before["twin"]["change_id"]
    assert opened["totals"]["unreachable_households"] == (
        before["totals"]["unreachable_households"] - top["restores_households"])
    assert opened["totals"]["unreachable_buildings"] == (
        before["totals"]["unreachable_buildings"] - top["restores_buildings"])
    still = {f["id"] for f in opened["unreachable"]["features"]}
    assert not still & set(top["buildings"])
    # as of the moment before it opened, the twin answers as it did then
    then = _get(client, auth, f"{URL}?asOf={quote(moment.isoformat())}")
    assert then["twin"]["change_id"] == before["twin"]["change_id"]
    assert (then["totals"], then["blocked_passages"]) == (before["totals"],
                                                          before["blocked_passages"])
    assert top["id"] not in {r["id"] for r in opened["blocked_passages"]}
    # blocked again through the API (a commander edits passages): the buildings that
    # depended on it are unreachable on the next request
    commander = login(client, "commander")
    item = client.get(f"/collections/fire_passages/items/{top['id']}", headers=commander)
    assert item.status_code == 200, item.text
    blocked = client.patch(
        f"/collections/fire_passages/items/{top['id']}",
        headers={**commander, "If-Match": item.headers["ETag"]},
        json={"type": "Feature", "properties": {"state": "blocked", "blocked_by": "堆物"},
              "reason": "堵塞 blocked again"})
    assert blocked.status_code == 200, blocked.text
    again = _get(client, auth)
    assert again["twin"]["change_id"] > opened["twin"]["change_id"]
    assert again["totals"] == before["totals"]
    back = {f["id"] for f in again["unreachable"]["features"]}
    assert set(top["buildings"]) <= back
    assert again["blocked_passages"][0]["id"] == top["id"]


def test_without_main_roads_engines_enter_from_the_largest_part(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    _edit(sample_db, "UPDATE twin.features SET props = props || "
          "'{\"road_class\": \"secondary\"}' WHERE layer = 'streets' "
          "AND props->>'road_class' = 'main'")
    body = _get(client, auth)
    assert body["network"]["entry"] == "largest component"
    assert body["totals"]["unreachable_buildings"] < body["totals"]["buildings"]
    # no street an engine may drive: nothing is reachable but the largest passage cluster
    _edit(sample_db, "UPDATE twin.features SET props = props || '{\"fire_engine\": false}' "
          "WHERE layer = 'streets'")
    none = _get(client, auth)
    assert none["network"]["fire_streets"] == 0
    assert none["totals"]["unreachable_buildings"] > body["totals"]["unreachable_buildings"]


@pytest.mark.parametrize(("query", "field"), [
    ("reach=-1", "reach"), ("reach=0", "reach"), ("reach=abc", "reach"),
    ("reach=nan", "reach"), ("by=street", "by"), ("radius=60", "radius"),
])
def test_bad_parameters_are_422(client: TestClient, auth: dict[str, str], query: str,
                                field: str) -> None:
    response = client.get(f"{URL}?{query}", headers=auth)
    assert response.status_code == 422, response.text
    assert field in [p["field"] for p in response.json()["problems"]]


def test_workers_are_refused_and_the_cli_prints(client: TestClient,
                                                sample_db: Database) -> None:
    with sample_db.app.connect() as conn:
        grid = conn.execute(text("SELECT props->>'code' FROM twin.features "
                                 "WHERE layer = 'micro_grids' ORDER BY id LIMIT 1")).scalar()
    assert client.get(URL, headers=login(client, f"worker-{grid}")).status_code == 403
    assert client.get(URL).status_code == 401
    done = run_twin("fire-access", "--top", "3", env=sample_db.env())
    assert done.returncode == 0, done.stderr
    assert "Fire access within 60 m" in done.stdout and "Blocked passages" in done.stdout
    as_json = run_twin("fire-access", "--reach", "80", "--json", env=sample_db.env())
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["parameters"]["reach_m"] == 80.0
