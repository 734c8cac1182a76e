"""Vector tiles: what PostGIS holds in the tile, with an ETag that follows edits in it."""

import math

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Database, login

MVT = "application/vnd.mapbox-vector-tile"


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return login(client, "commander")


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _busy_tile(db: Database, z: int) -> tuple[int, int]:
    with db.app.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Collect(geom)) AS c "
            "FROM twin.features WHERE layer = 'buildings') AS m")).one()
    return _tile_of(lon, lat, z)


def _ids_in(db: Database, z: int, x: int, y: int, margin: float) -> set[int]:
    with db.app.connect() as conn:
        return set(conn.execute(text(
            "SELECT id FROM twin.features WHERE layer = 'buildings' AND ST_Intersects("
            "ST_Transform(geom, 3857), ST_Expand(ST_TileEnvelope(:z, :x, :y), "
            "(ST_XMax(ST_TileEnvelope(:z, :x, :y)) - ST_XMin(ST_TileEnvelope(:z, :x, :y)))"
            " * :m))"), {"z": z, "x": x, "y": y, "m": margin}).scalars())


def test_a_tile_holds_the_features_in_it(client: TestClient, auth: dict[str, str],
                                         sample_db: Database) -> None:
    x, y = _busy_tile(sample_db, 16)
    response = client.get(f"/collections/buildings/tiles/WebMercatorQuad/16/{x}/{y}",
                          headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == MVT
    decoded = mapbox_vector_tile.decode(response.content)
    features = decoded["buildings"]["features"]
    ids = {f["id"] for f in features}
    inside, near = _ids_in(sample_db, 16, x, y, 0.0), _ids_in(sample_db, 16, x, y, 64 / 4096)
    assert inside and inside <= ids <= near
    assert {"use", "floors", "households"} <= set(features[0]["properties"])
    assert isinstance(features[0]["properties"]["floors"], int)


def test_tile_etag_follows_edits_inside_it_only(client: TestClient, auth: dict[str, str],
                                                sample_db: Database) -> None:
    x, y = _busy_tile(sample_db, 16)
    url = f"/collections/buildings/tiles/WebMercatorQuad/16/{x}/{y}"
    etag = client.get(url, headers=auth).headers["ETag"]
    assert client.get(url, headers={**auth, "If-None-Match": etag}).status_code == 304
    inside = min(_ids_in(sample_db, 16, x, y, 0.0))
    with sample_db.app.begin() as conn:
        far = conn.execute(text(
            "SELECT id FROM twin.features WHERE layer = 'buildings' AND NOT id = ANY(:near) "
            "ORDER BY id LIMIT 1"), {"near": list(_ids_in(sample_db, 16, x, y, 0.5))}
        ).scalar_one()
        conn.execute(text("UPDATE twin.features SET name = 'elsewhere' WHERE id = :id"),
                     {"id": far})
    assert client.get(url, headers={**auth, "If-None-Match": etag}).status_code == 304
    with sample_db.app.begin() as conn:
        conn.execute(text("UPDATE twin.features SET props = props || '{\"floors\": 7}' "
                          "WHERE id = :id"), {"id": inside})
    changed = client.get(url, headers={**auth, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    with sample_db.app.begin() as conn:
        conn.execute(text("DELETE FROM twin.features WHERE id = :id"), {"id": inside})
    gone = client.get(url, headers={**auth, "If-None-Match": changed.headers["ETag"]})
    assert gone.status_code == 200
    assert inside not in {f["id"] for f in mapbox_vector_tile.decode(gone.content)[
        "buildings"]["features"]}


def test_an_empty_tile_is_empty(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/collections/buildings/tiles/WebMercatorQuad/16/0/0", headers=auth)
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize("zxy", ["25/0/0", "3/8/0", "3/0/8", "a/1/1", "3/-1/0"])
def test_tiles_outside_the_matrix_are_404(client: TestClient, auth: dict[str, str],
                                          zxy: str) -> None:
    response = client.get(f"/collections/buildings/tiles/WebMercatorQuad/{zxy}", headers=auth)
    assert response.status_code == 404
    assert "tile" in response.json()["description"]


def test_tiles_need_a_token(client: TestClient) -> None:
    assert client.get("/collections/buildings/tiles/WebMercatorQuad/0/0/0").status_code == 401


def test_a_tile_is_gzipped_when_asked(client: TestClient, auth: dict[str, str],
                                      sample_db: Database) -> None:
    x, y = _busy_tile(sample_db, 16)
    url = f"/collections/buildings/tiles/WebMercatorQuad/16/{x}/{y}"
    zipped = client.get(url, headers={**auth, "Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    plain = client.get(url, headers={**auth, "Accept-Encoding": "identity"})
    assert zipped.content == plain.content  # the client unzipped it
