"""OGC API - Features reads, through HTTP, checked against what SQL says the twin holds."""

import gzip

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Database, login
from twin.registry import all_layers

BBOX = (121.505, 31.19, 121.515, 31.198)


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return login(client, "planner")


def _ids(db: Database, sql: str, **params: object) -> list[int]:
    with db.app.connect() as conn:
        return list(conn.execute(text(sql), params).scalars())


def test_collections_are_the_layers_and_agree_with_each_collection(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    listed = client.get("/collections", headers=auth).json()["collections"]
    assert [c["id"] for c in listed] == list(all_layers())
    counts = dict(sample_db.rows("SELECT layer, count(*) FROM twin.features GROUP BY layer"))
    for entry in listed:
        one = client.get(f"/collections/{entry['id']}", headers=auth).json()
        assert one == entry
        assert one["itemType"] == "feature"
        assert one["itemCount"] == counts.get(one["id"], 0)
        assert any(link["rel"] == "items" for link in one["links"])
        if not one["itemCount"]:  # a layer the sample leaves empty has no extent
            assert "extent" not in one
            continue
        x0, y0, x1, y1 = one["extent"]["spatial"]["bbox"][0]
        assert 121.4 < x0 < x1 < 121.7 and 31.1 < y0 < y1 < 31.3


def test_paging_through_a_layer_returns_every_feature_once(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    seen: list[int] = []
    url: str | None = "/collections/waste_points/items?limit=70"
    pages = 0
    while url:
        page = client.get(url, headers=auth)
        assert page.status_code == 200
        assert page.headers["content-type"] == "application/geo+json"
        body = page.json()
        assert body["numberReturned"] == len(body["features"]) <= 70
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        pages += 1
    expected = _ids(sample_db, "SELECT id FROM twin.features WHERE layer = 'waste_points' "
                               "ORDER BY id")
    assert seen == expected
    assert pages == -(-len(expected) // 70)


def _walk(client: TestClient, auth: dict[str, str], url: str) -> list[int]:
    seen: list[int] = []
    next_url: str | None = url
    while next_url:
        body = client.get(next_url, headers=auth).json()
        seen += [f["id"] for f in body["features"]]
        next_url = next((lk["href"] for lk in body["links"] if lk["rel"] == "next"), None)
    return seen


@pytest.mark.parametrize(("sortby", "order"), [
    ("-floors,households", "(props->>'floors')::int DESC, (props->>'households')::int, id"),
    ("built_year", "(props->>'built_year') IS NULL, (props->>'built_year')::int, id"),
    ("+use,-id", "props->>'use', id DESC"),
    ("-updated", "valid_from DESC, id"),
])
def test_sorted_paging_returns_every_feature_once_in_order(
        client: TestClient, auth: dict[str, str], sample_db: Database, sortby: str,
        order: str) -> None:
    bbox = ",".join(map(str, BBOX))
    seen = _walk(client, auth, f"/collections/buildings/items?sortby={sortby}&limit=97"
                               f"&bbox={bbox}")
    expected = _ids(sample_db, f"SELECT id FROM twin.features WHERE layer = 'buildings' AND "
                               f"ST_Intersects(geom, ST_MakeEnvelope(:a, :b, :c, :d, 4326)) "
                               f"ORDER BY {order}", a=BBOX[0], b=BBOX[1], c=BBOX[2], d=BBOX[3])
    assert len(expected) > 200
    assert seen == expected


def test_default_page_is_100_features(client: TestClient, auth: dict[str, str]) -> None:
    body = client.get("/collections/buildings/items", headers=auth).json()
    assert body["numberReturned"] == 100 == len(body["features"])
    feature = body["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert {"use", "floors", "households", "name", "tags", "micro_grid", "version"} <= set(
        feature["properties"])


def test_bbox_selects_what_postgis_selects(client: TestClient, auth: dict[str, str],
                                           sample_db: Database) -> None:
    bbox = ",".join(map(str, BBOX))
    body = client.get(f"/collections/buildings/items?bbox={bbox}&limit=10000",
                      headers=auth).json()
    expected = _ids(sample_db, "SELECT id FROM twin.features WHERE layer = 'buildings' AND "
                               "ST_Intersects(geom, ST_MakeEnvelope(:a, :b, :c, :d, 4326)) "
                               "ORDER BY id", a=BBOX[0], b=BBOX[1], c=BBOX[2], d=BBOX[3])
    assert [f["id"] for f in body["features"]] == expected
    assert 0 < len(expected) < 4000
    six = client.get(f"/collections/buildings/items?bbox={BBOX[0]},{BBOX[1]},0,{BBOX[2]},"
                     f"{BBOX[3]},100&limit=10000", headers=auth).json()
    assert [f["id"] for f in six["features"]] == expected


def test_properties_chooses_the_attributes(client: TestClient, auth: dict[str, str]) -> None:
    body = client.get("/collections/charging_points/items?properties=state,micro_grid",
                      headers=auth).json()
    assert {tuple(sorted(f["properties"])) for f in body["features"]} == {
        ("micro_grid", "state")}


def test_datetime_is_the_features_validity(client: TestClient, auth: dict[str, str]) -> None:
    url = "/collections/waste_points/items?limit=1&datetime="
    assert client.get(url + "2000-01-01T00:00:00Z", headers=auth).json()["numberReturned"] == 0
    assert client.get(url + "../2999-01-01T00:00:00Z", headers=auth).json()[
        "numberReturned"] == 1
    for written in ("2999-01-01T00:00:00%2B08:00", "2999-01-01T00:00:00+08:00"):
        assert client.get(url + written, headers=auth).json()["numberReturned"] == 1


def test_one_feature_with_etag_and_304(client: TestClient, auth: dict[str, str],
                                       sample_db: Database) -> None:
    (fid,) = _ids(sample_db, "SELECT min(id) FROM twin.features WHERE layer = 'fire_passages'")
    url = f"/collections/fire_passages/items/{fid}"
    first = client.get(url, headers=auth)
    assert first.status_code == 200 and first.json()["id"] == fid
    etag = first.headers["ETag"]
    assert client.get(url, headers={**auth, "If-None-Match": etag}).status_code == 304
    with sample_db.app.begin() as conn:
        conn.execute(text("UPDATE twin.features SET props = props || '{\"state\": \"blocked\"}'"
                          " || '{\"width_m\": 2.5}' WHERE id = :id"), {"id": fid})
    again = client.get(url, headers={**auth, "If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
    assert again.json()["properties"]["state"] == "blocked"


def test_a_page_etag_follows_the_features_on_the_page(client: TestClient, auth: dict[str, str],
                                                      sample_db: Database) -> None:
    """The ETag digests the page's (id, version): an edit elsewhere in the layer keeps it
    (304), an edit of a feature on the page changes it."""
    url = "/collections/waste_points/items?limit=5"
    etag = client.get(url, headers=auth).headers["ETag"]
    assert client.get(url, headers={**auth, "If-None-Match": etag}).status_code == 304
    edit = ("UPDATE twin.features SET name = 'moved' WHERE id = (SELECT {}(id) "
            "FROM twin.features WHERE layer = 'waste_points')")
    with sample_db.app.begin() as conn:
        conn.execute(text(edit.format("max")))
    assert client.get(url, headers={**auth, "If-None-Match": etag}).status_code == 304
    with sample_db.app.begin() as conn:
        conn.execute(text(edit.format("min")))
    changed = client.get(url, headers={**auth, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.json()["features"][0]["properties"]["name"] == "moved"


def test_a_page_etag_changes_when_an_older_write_commits_late(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    """Change ids are taken in write order but seen in commit order: a write that took a
    lower id and commits after a newer one must still change the page's ETag."""
    url = "/collections/waste_points/items?limit=5"
    edit = text("UPDATE twin.features SET name = :name WHERE id = (SELECT min(id) + :k "
                "FROM twin.features WHERE layer = 'waste_points')")
    with sample_db.app.connect() as slow:
        slow.execute(edit, {"name": "slow", "k": 0})  # takes a change id, commits later
        with sample_db.app.begin() as fast:
            fast.execute(edit, {"name": "fast", "k": 1})
        etag = client.get(url, headers=auth).headers["ETag"]
        assert client.get(url, headers={**auth, "If-None-Match": etag}).status_code == 304
        slow.commit()
    after = client.get(url, headers={**auth, "If-None-Match": etag})
    assert after.status_code == 200
    assert "slow" in [f["properties"]["name"] for f in after.json()["features"]]


def test_gzip_when_asked(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/collections/buildings/items?limit=500",
                          headers={**auth, "Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["numberReturned"] == 500  # the client unzipped it
    raw = client.get("/collections/buildings/items?limit=500",
                     headers={**auth, "Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert len(gzip.compress(raw.content)) < len(raw.content)


def test_a_streamed_page_is_gzipped_when_asked(client: TestClient,
                                               auth: dict[str, str]) -> None:
    page = client.get("/collections/buildings/items?limit=2000",
                      headers={**auth, "Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"
    assert page.json()["numberReturned"] == 2000


def test_streamed_pages_follow_each_other_exactly(client: TestClient, auth: dict[str, str],
                                                  sample_db: Database) -> None:
    """Large pages come in chunks of features; pages of 1,234 (several chunks, the last one
    partial) chained by their next links give every building once, in id order."""
    expected = _ids(sample_db, "SELECT id FROM twin.features WHERE layer = 'buildings' "
                    "ORDER BY id")
    seen: list[int] = []
    url: str | None = "/collections/buildings/items?limit=1234&properties=name"
    while url:
        body = client.get(url, headers=auth).json()
        assert body["numberReturned"] == len(body["features"]) <= 1234
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert seen == expected


def test_head_gives_the_headers_of_get(client: TestClient, auth: dict[str, str]) -> None:
    url = "/collections/waste_points/items?limit=3"
    head, get = client.head(url, headers=auth), client.get(url, headers=auth)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert client.head("/collections/nowhere/items", headers=auth).status_code == 404


def test_read_routes_still_answer_options(client: TestClient) -> None:
    response = client.options("/collections/buildings/items/1")
    assert response.status_code == 204
    assert "GET" in response.headers["allow"]


BAD = [
    ("bbox=1,2,3", 400, "bbox"),
    ("bbox=a,b,c,d", 400, "bbox"),
    ("bbox=121.6,31.1,121.5,31.2", 400, "inverted"),
    ("bbox=200,31,201,32", 400, "outside the world"),
    ("bbox=121,31,122,nan", 400, "bbox"),
    ("limit=0", 400, "limit"),
    ("limit=-5", 400, "limit"),
    ("limit=10001", 400, "limit"),
    ("limit=ten", 400, "limit"),
    ("properties=state,secret", 400, "secret"),
    ("properties=", 400, "properties"),
    ("cursor=abc", 400, "cursor"),
    ("cursor=WzEsMl0", 400, "cursor"),
    ("sortby=geometry", 400, "sortby"),
    ("sortby=-secret", 400, "secret"),
    ("cursor=1;DROP TABLE twin.features", 400, "cursor"),
    ("datetime=yesterday", 400, "datetime"),
    ("datetime=2024-01-01T00:00:00", 400, "offset"),
    ("datetime=2025-01-01T00:00:00Z/2024-01-01T00:00:00Z", 400, "ends before"),
    ("crs=EPSG:2000", 400, "crs"),
    ("bbox-crs=EPSG:9999&bbox=1,2,3,4", 400, "bbox-crs"),
    ("bbox-crs=EPSG:4326&bbox=121.5,31.1,121.6,31.2", 400, "outside the world"),
    ("bbox-crs=EPSG:3857&bbox=1e9,0,2e9,1", 400, "outside the world"),
    ("f=xml", 400, "f"),
    ("colour=red", 400, "unknown query parameter 'colour'"),
]


@pytest.mark.parametrize(("query", "status", "named"), BAD)
def test_bad_parameters_are_400_naming_them(client: TestClient, auth: dict[str, str],
                                            query: str, status: int, named: str) -> None:
    response = client.get(f"/collections/waste_points/items?{query}", headers=auth)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == "InvalidParameterValue"
    assert named in body["description"]


@pytest.mark.parametrize("path", ["/collections/rivers", "/collections/rivers/items",
                                  "/collections/waste_points/items/999999999",
                                  "/collections/waste_points/items/abc",
                                  "/collections/buildings/items/1'--"])
def test_unknown_collections_and_ids_are_404(client: TestClient, auth: dict[str, str],
                                             path: str) -> None:
    response = client.get(path, headers=auth)
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"


def test_reading_needs_a_token(client: TestClient) -> None:
    for path in ["/collections", "/collections/buildings/items",
                 "/collections/buildings/items/1"]:
        assert client.get(path).status_code == 401


EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def _first_point(client: TestClient, auth: dict[str, str], query: str) -> tuple[
        list[float], str]:
    response = client.get(f"/collections/waste_points/items?limit=1&{query}", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()["features"][0]["geometry"]["coordinates"], response.headers[
        "Content-Crs"]


def test_crs_gives_coordinates_in_its_axis_order(client: TestClient, auth: dict[str, str],
                                                  sample_db: Database) -> None:
    (lon, lat), header = _first_point(client, auth, "")
    assert header == f"<{CRS84}>"
    latlon, header = _first_point(client, auth, f"crs={EPSG}4326")
    assert latlon == [lat, lon] and header == f"<{EPSG}4326>"
    cgcs, _ = _first_point(client, auth, f"crs={EPSG}4490")
    assert cgcs == pytest.approx([lat, lon], abs=1e-5)
    metres, _ = _first_point(client, auth, f"crs={EPSG}3857")
    with sample_db.app.connect() as conn:
        x, y = conn.execute(text("SELECT ST_X(p), ST_Y(p) FROM ST_Transform(ST_SetSRID("
                                 "ST_MakePoint(:lon, :lat), 4326), 3857) AS p"),
                            {"lon": lon, "lat": lat}).one()
    assert metres == pytest.approx([x, y], abs=0.01)
    short, _ = _first_point(client, auth, "crs=EPSG:4326")
    assert short == [lat, lon]


def test_one_feature_in_another_crs_has_its_own_etag(client: TestClient,
                                                      auth: dict[str, str]) -> None:
    fid = client.get("/collections/waste_points/items?limit=1", headers=auth).json()[
        "features"][0]["id"]
    plain = client.get(f"/collections/waste_points/items/{fid}", headers=auth)
    flipped = client.get(f"/collections/waste_points/items/{fid}?crs={EPSG}4326", headers=auth)
    assert flipped.json()["geometry"]["coordinates"] == plain.json()["geometry"][
        "coordinates"][::-1]
    assert flipped.headers["ETag"] != plain.headers["ETag"]


def test_bbox_crs_selects_the_same_features(client: TestClient, auth: dict[str, str],
                                            sample_db: Database) -> None:
    def ids(query: str) -> list[int]:
        body = client.get(f"/collections/buildings/items?limit=10000&{query}",
                          headers=auth).json()
        return [f["id"] for f in body["features"]]

    x0, y0, x1, y1 = BBOX
    reference = ids(f"bbox={x0},{y0},{x1},{y1}")
    assert reference
    assert ids(f"bbox={y0},{x0},{y1},{x1}&bbox-crs={EPSG}4326") == reference
    with sample_db.app.connect() as conn:
        box = conn.execute(text("SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM "
                                "ST_Transform(ST_MakeEnvelope(:a, :b, :c, :d, 4326), 3857) b"),
                           {"a": x0, "b": y0, "c": x1, "d": y1}).one()
    # Web Mercator keeps meridians and parallels straight: the same box, the same features
    assert ids("bbox={},{},{},{}&bbox-crs={}3857".format(*box, EPSG)) == reference


@pytest.mark.parametrize(("cql", "sql"), [
    ("state = 'blocked'", "props->>'state' = 'blocked'"),
    ("width_m >= 3.5 AND state <> 'open'", "(props->>'width_m')::float >= 3.5 "
                                           "AND props->>'state' <> 'open'"),
    ("A_CONTAINS(tags, ('condition=占用'))", "tags @> ARRAY['condition=占用']"),
    ("S_INTERSECTS(geometry, BBOX(121.505, 31.19, 121.515, 31.198))",
     "ST_Intersects(geom, ST_MakeEnvelope(121.505, 31.19, 121.515, 31.198, 4326))"),
])
def test_a_cql2_filter_selects_what_sql_selects(client: TestClient, auth: dict[str, str],
                                                sample_db: Database, cql: str,
                                                sql: str) -> None:
    seen = _walk(client, auth, f"/collections/fire_passages/items?limit=1000&filter={cql}")
    expected = _ids(sample_db, f"SELECT id FROM twin.features WHERE layer = 'fire_passages' "
                               f"AND {sql} ORDER BY id")
    assert expected and seen == expected


def test_a_cql2_json_filter_with_paging(client: TestClient, auth: dict[str, str],
                                        sample_db: Database) -> None:
    cql = '{"op": "=", "args": [{"property": "state"}, "open"]}'
    seen = _walk(client, auth, f"/collections/fire_passages/items?limit=50&filter-lang="
                               f"cql2-json&filter={cql}")
    expected = _ids(sample_db, "SELECT id FROM twin.features WHERE layer = 'fire_passages' "
                               "AND props->>'state' = 'open' ORDER BY id")
    assert len(expected) > 50 and seen == expected


def test_queryables_name_what_a_filter_may_use(client: TestClient,
                                               auth: dict[str, str]) -> None:
    response = client.get("/collections/charging_points/queryables", headers=auth)
    assert response.headers["content-type"] == "application/schema+json"
    schema = response.json()
    assert {"state", "site_type", "tags", "geometry", "micro_grid"} <= set(schema["properties"])
    assert schema["properties"]["state"]["enum"] == ["safe", "hazard", "out_of_service",
                                                     "planned"]


@pytest.mark.parametrize(("query", "named"), [
    ("filter=state = ", "filter"),
    ("filter=colour = 'red'", "colour"),
    ("filter=FOO(state)", "FOO"),
    ("filter=width_m > 'wide'", "filter"),
    ("filter=state='open'&filter-lang=sql", "filter-lang"),
    ("filter-lang=cql2-text", "filter-lang"),
    ("filter=state='open'&filter-crs=EPSG:3857", "filter-crs"),
])
def test_bad_filters_are_400(client: TestClient, auth: dict[str, str], query: str,
                             named: str) -> None:
    response = client.get(f"/collections/fire_passages/items?{query}", headers=auth)
    assert response.status_code == 400, response.text[:300]
    assert named in response.text


def test_a_sql_looking_value_is_just_a_value(client: TestClient, auth: dict[str, str],
                                             sample_db: Database) -> None:
    cql = "name = 'x''; DROP TABLE twin.features; --'"
    body = client.get(f"/collections/fire_passages/items?filter={cql}", headers=auth).json()
    assert body["numberReturned"] == 0
    assert _ids(sample_db, "SELECT count(*) FROM twin.features") != [0]


@pytest.mark.parametrize(("query", "counted"), [
    ("", True), ("sortby=-floors&properties=floors&crs=EPSG:4326", True),
    ("limit=600", True),  # streamed
    ("bbox=121.505,31.19,121.515,31.198", False), ("filter=floors > 3", False),
    ("datetime=../2100-01-01T00:00:00Z", False), ("asOf=2100-01-01T00:00:00Z", False),
])
def test_number_matched_only_when_it_is_the_layers_count(
        client: TestClient, auth: dict[str, str], sample_db: Database, query: str,
        counted: bool) -> None:
    """A filter, bbox or datetime would make numberMatched a count of the selection, as
    costly as reading it; the whole layer's count is cheap, on the first page and the next."""
    buildings = sample_db.scalar("SELECT count(*) FROM twin.features "
                                 "WHERE layer = 'buildings'")
    body = client.get(f"/collections/buildings/items?{query}", headers=auth).json()
    assert body.get("numberMatched") == (buildings if counted else None)
    following = next(link["href"] for link in body["links"] if link["rel"] == "next")
    assert client.get(following, headers=auth).json().get("numberMatched") == body.get(
        "numberMatched")


def test_a_page_that_gives_the_count_changes_its_etag_with_it(
        client: TestClient, auth: dict[str, str], sample_db: Database) -> None:
    url = "/collections/waste_points/items?limit=5"
    before = client.get(url, headers=auth)
    x, y = sample_db.one("SELECT ST_X(geom), ST_Y(geom) FROM twin.features "
                         "WHERE layer = 'waste_points' ORDER BY id DESC LIMIT 1")
    made = client.post("/collections/waste_points/items", headers=login(client, "admin"), json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
        "properties": {"state": "ok"}})
    assert made.status_code == 201, made.text
    after = client.get(url, headers=auth)
    assert after.json()["features"] == before.json()["features"]  # a new id: not on page 1
    assert after.json()["numberMatched"] == before.json()["numberMatched"] + 1
    assert after.headers["ETag"] != before.headers["ETag"]
    assert client.get(url, headers={**auth, "If-None-Match": before.headers["ETag"]}
                      ).status_code == 200
    assert client.get(url, headers={**auth, "If-None-Match": after.headers["ETag"]}
                      ).status_code == 304
    # weak comparison (RFC 9110 §13.1.2): W/ of the current ETag is a match too
    assert client.get(url, headers={**auth, "If-None-Match": f'"x", W/{after.headers["ETag"]}'}
                      ).status_code == 304
