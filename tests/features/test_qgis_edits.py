"""QGIS edits the twin: requests shaped as its OGC API - Features provider sends them (3.36
and later: qgis/QGIS src/providers/wfs/oapif/qgsoapifprovider.cpp, its PATCH, PUT and DELETE
requests), without If-Match. For the roles of TWIN_IMPLICIT_IF_MATCH_ROLES (planners and
admins by default) an edit is based on the newest version the token read or wrote; a change by
anyone else since is refused, never overwritten; every refusal leaves the twin as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from tests.conftest import DEMO_PASSWORD, Database, login
from twin.settings import Settings

# what QGIS's requests carry besides the token (qgsbasenetworkrequest.cpp): a Content-Type,
# and Content-Crs only with a geometry of a layer read in a CRS other than CRS84
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
GEOJSON = {"Content-Type": "application/geo+json"}


def _dump(body: dict[str, Any]) -> bytes:
    """A body as QGIS's nlohmann::json dump() writes it: compact, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _page(client: TestClient, token: dict[str, str], layer: str, limit: int = 1000
          ) -> list[dict[str, Any]]:
    """A page of items as QGIS downloads a layer (limit 1000: the default limit, raised to
    1000 and capped at the maximum)."""
    answer = client.get(f"/collections/{layer}/items?limit={limit}", headers=token)
    assert answer.status_code == 200, answer.text
    features: list[dict[str, Any]] = answer.json()["features"]
    return features


def _row(db: Database, fid: int) -> tuple[Any, ...]:
    return tuple(db.one("SELECT version, props, ST_AsText(geom) FROM twin.features "
                        "WHERE id = :id", id=fid))


def _changes(db: Database) -> int:
    return int(db.scalar("SELECT count(*) FROM twin.changes"))


def test_qgis_finds_it_may_edit_and_its_edits_apply(client: TestClient,
                                                    sample_db: Database) -> None:
    """The provider asks OPTIONS of the items and of the first item it read; then a save
    sends a geometry PATCH and an attribute PATCH of the same feature one after the other
    (the second based on the first), a whole-feature PUT (what it sends to a server without
    PATCH, read-only properties and all) and a bare DELETE."""
    qgis = login(client, "planner")
    assert "POST" in client.options("/collections/charging_points/items").headers["allow"]
    first = _page(client, qgis, "charging_points", limit=10)[0]["id"]
    allowed = client.options(f"/collections/charging_points/items/{first}").headers["allow"]
    assert {"PUT", "PATCH", "DELETE"} <= {m.strip() for m in allowed.split(",")}
    point = _page(client, qgis, "charging_points")[-1]
    fid, version = point["id"], point["properties"]["version"]
    url = f"/collections/charging_points/items/{fid}"
    lon, lat = point["geometry"]["coordinates"]
    moved = client.patch(url, headers={**qgis, **MERGE_PATCH}, content=_dump(
        {"geometry": {"type": "Point", "coordinates": [lon + 0.00001, lat]}}))
    assert moved.status_code == 200, moved.text
    sockets = point["properties"]["sockets"] + 1
    changed = client.patch(url, headers={**qgis, **MERGE_PATCH},
                           content=_dump({"properties": {"sockets": sockets}}))
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == f'"{fid}-{version + 2}"'
    assert changed.json()["geometry"]["coordinates"][0] == pytest.approx(lon + 0.00001)
    # QGIS's PUT: the feature as it holds it, id at the top, every field of its table
    whole = {"type": "Feature", "id": fid, "geometry": changed.json()["geometry"],
             "properties": {**changed.json()["properties"], "state": "hazard"}}
    replaced = client.put(url, headers={**qgis, **GEOJSON}, content=_dump(whole))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["properties"]["state"] == "hazard"
    assert replaced.json()["properties"]["sockets"] == sockets
    assert client.delete(url, headers=qgis).status_code == 204
    log = sample_db.one("SELECT array_agg(operation ORDER BY id), "
                        "array_agg(version_before ORDER BY id) FROM twin.changes "
                        "WHERE feature_id = :id AND actor = 'planner'", id=fid)
    assert log[0] == ["update", "update", "update", "delete"]
    assert log[1] == [version, version + 1, version + 2, version + 3]
    # a building from the page's second chunk of 500: every chunk's versions are kept
    building = _page(client, qgis, "buildings")[700]
    done = client.patch(f"/collections/buildings/items/{building['id']}",
                        headers={**qgis, **MERGE_PATCH},
                        content=_dump({"properties": {"address": "浦东南路 1 号"}}))
    assert done.status_code == 200, done.text


def test_a_change_by_someone_else_since_the_read_is_refused_not_overwritten(
        client: TestClient, sample_db: Database) -> None:
    qgis = login(client, "planner")
    point = _page(client, qgis, "charging_points")[0]
    fid, version = point["id"], point["properties"]["version"]
    url = f"/collections/charging_points/items/{fid}"
    # the planner's own browser is someone else too: another token, which read nothing
    for n, (other, state) in enumerate(((login(client, "commander"), "out_of_service"),
                                        (login(client, "planner"), "hazard"))):
        theirs = client.patch(url, headers={**other, **MERGE_PATCH,
                                            "If-Match": f'"{fid}-{version + n}"'},
                              content=_dump({"properties": {"state": state}}))
        assert theirs.status_code == 200, theirs.text
    before, changes = _row(sample_db, fid), _changes(sample_db)
    stale = client.patch(url, headers={**qgis, **MERGE_PATCH},
                         content=_dump({"properties": {"state": "safe"}}))
    assert stale.status_code == 412, stale.text
    assert stale.json()["current_version"] == version + 2
    assert stale.json()["etag"] == f'"{fid}-{version + 2}"'
    assert stale.json()["problems"][0]["reason_zh"]
    assert client.delete(url, headers=qgis).status_code == 412
    assert _row(sample_db, fid) == before and _changes(sample_db) == changes
    # reloaded (the layer read again), the same edit applies on what it now shows
    _page(client, qgis, "charging_points")
    redone = client.patch(url, headers={**qgis, **MERGE_PATCH},
                          content=_dump({"properties": {"state": "safe"}}))
    assert redone.status_code == 200 and redone.headers["ETag"] == f'"{fid}-{version + 3}"'


def test_a_token_that_never_read_the_feature_is_told_to_read_it(
        client: TestClient, sample_db: Database) -> None:
    reader, other = login(client, "planner"), login(client, "planner")
    point = _page(client, reader, "charging_points")[0]
    url = f"/collections/charging_points/items/{point['id']}"
    before, changes = _row(sample_db, point["id"]), _changes(sample_db)
    for answer in (client.patch(url, headers={**other, **MERGE_PATCH},
                                content=_dump({"properties": {"sockets": 3}})),
                   client.delete(url, headers=other)):
        assert answer.status_code == 428, answer.text
        assert "has not read feature" in answer.json()["description"]
        assert "reload the layer" in answer.json()["description"]
        problem = answer.json()["problems"][0]
        assert problem["field"] == "If-Match" and problem["reason_zh"]
    assert _row(sample_db, point["id"]) == before and _changes(sample_db) == changes


@pytest.fixture
def if_match_always(sample_db: Database) -> Iterator[TestClient]:
    """The service with TWIN_IMPLICIT_IF_MATCH_ROLES empty: If-Match required of everyone."""
    settings = Settings(database_url=sample_db.app_url, demo_password=DEMO_PASSWORD,
                        implicit_if_match_roles="")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(("role", "which"), [("commander", "client"),
                                             ("planner", "if_match_always")])
def test_a_role_not_named_still_needs_if_match(request: pytest.FixtureRequest,
                                               sample_db: Database, role: str,
                                               which: str) -> None:
    """A commander by default, and a planner when the setting is empty: a read does not
    stand for If-Match."""
    client: TestClient = request.getfixturevalue(which)
    token = login(client, role)
    point = _page(client, token, "charging_points")[0]
    url = f"/collections/charging_points/items/{point['id']}"
    assert client.get(url, headers=token).status_code == 200
    changes = _changes(sample_db)
    refused = client.patch(url, headers={**token, **MERGE_PATCH},
                           content=_dump({"properties": {"sockets": 3}}))
    assert refused.status_code == 428
    assert refused.json()["description"].startswith("say which version of the feature")
    assert client.delete(url, headers=token).status_code == 428
    assert _changes(sample_db) == changes


def test_the_setting_names_roles() -> None:
    with pytest.raises(ValidationError, match="'worker', 'planner'"):
        Settings(implicit_if_match_roles="planner, planer")
    assert Settings(implicit_if_match_roles="worker, admin").implicit_if_match_roles == [
        "worker", "admin"]
