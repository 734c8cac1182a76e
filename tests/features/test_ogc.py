"""What an OGC API - Features conformance suite checks first: the definition, the classes,
the links (in the body and as Link headers), OPTIONS, and pages for people."""

import re
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.conftest import Database, login

SCHEMA_REL = "http://www.opengis.net/def/rel/ogc/1.0/schema"


def _header_links(response: httpx.Response) -> list[dict[str, str]]:
    """The Link header's links as the body spells them (href, rel, type); an href may be
    %-encoded where the body's is not."""
    return [{"href": unquote(link["url"]), "rel": link["rel"], "type": link["type"]}
            for link in response.links.values()]


def _body_links(links: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"href": unquote(link["href"]), "rel": link["rel"], "type": link["type"]}
            for link in links]


def test_the_api_definition_is_valid_openapi_3_0(client: TestClient) -> None:
    spec = client.get("/api").json()
    assert spec["openapi"].startswith("3.0")
    validate(spec)
    items = spec["paths"]["/collections/{layer}/items"]["get"]
    names = {p["name"] for p in items["parameters"]}
    assert {"bbox", "bbox-crs", "limit", "datetime", "crs", "sortby", "properties",
            "filter", "filter-lang"} <= names


def test_conformance_lists_the_classes(client: TestClient) -> None:
    classes = client.get("/conformance").json()["conformsTo"]
    base = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
    assert {base + "core", base + "geojson", base + "oas30"} <= set(classes)
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in classes
    part4 = "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/"
    assert {part4 + "create-replace-delete", part4 + "update",
            part4 + "optimistic-locking-etags"} <= set(classes)
    # what QGIS looks for before it reads a collection's schema
    assert "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/schemas" in classes
    assert "http://www.opengis.net/spec/ogcapi-common-3/1.0/conf/schemas" in classes
    assert len(classes) == len(set(classes))


def test_a_collection_links_its_schema_and_says_so_in_a_link_header(
        client: TestClient) -> None:
    auth = login(client, "planner")
    response = client.get("/collections/buildings", headers=auth)
    body = response.json()
    assert _header_links(response) == _body_links(body["links"])
    schema_link = next(link for link in body["links"] if link["rel"] == SCHEMA_REL)
    assert schema_link["type"] == "application/schema+json"
    assert schema_link["href"] == "http://testserver/collections/buildings/schema"
    page = client.get("/collections/buildings?f=html", headers=auth)
    links = {link["rel"]: link for link in _header_links(page)}
    assert links["self"]["type"] == "text/html" and links["self"]["href"].endswith("?f=html")
    assert links["alternate"] == {"href": "http://testserver/collections/buildings",
                                  "rel": "alternate", "type": "application/json"}


def test_the_schema_follows_part_5(client: TestClient) -> None:
    response = client.get("/collections/buildings/schema",
                          headers={**login(client, "planner"),
                                   "Accept": "application/schema+json"})
    assert response.headers["content-type"] == "application/schema+json"
    schema = response.json()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "http://testserver/collections/buildings/schema"
    assert schema["type"] == "object" and schema["title"] == "建筑 Buildings"
    properties = schema["properties"]
    roles = {name: p["x-ogc-role"] for name, p in properties.items() if "x-ogc-role" in p}
    assert roles == {"id": "id", "geometry": "primary-geometry", "updated": "primary-instant"}
    assert properties["id"] == {**properties["id"], "type": "integer", "readOnly": True}
    assert properties["geometry"]["format"] == "geometry-polygon"
    assert "type" not in properties["geometry"]
    # every other property has one type (QGIS makes no field of one without), a title in
    # Chinese and English, and a place of its own
    assert all(isinstance(p["type"], str) for n, p in properties.items() if n != "geometry")
    assert properties["floors"]["title"] == "层数 Floors"
    assert properties["built_year"]["type"] == "integer"  # optional: anyOf [int, null] folded
    assert sorted(p["x-ogc-propertySeq"] for p in properties.values()) == list(
        range(1, len(properties) + 1))
    assert {n for n, p in properties.items() if p.get("readOnly")} == {
        "id", "micro_grid", "residential_area", "version", "updated", "changed_by"}
    assert {"geometry", "use", "floors"} <= set(schema["required"])
    assert schema["x-twin"]["attributes"] == ["use", "floors", "households", "elderly",
                                             "built_year", "address"]
    # additional keywords are x- ones (Part 5 /req/schemas/additional-keywords)
    assert {key for key in schema if not key.startswith("x-")} == {
        "$schema", "$id", "type", "title", "description", "properties", "required",
        "additionalProperties"}


def test_a_page_of_items_carries_its_links_as_a_link_header(client: TestClient) -> None:
    auth = login(client, "planner")
    for url in ["/collections/waste_points/items?limit=7&filter=state>'a'",
                "/collections/buildings/items?limit=600"]:  # streamed: next known up front
        response = client.get(url, headers=auth)
        body = response.json()
        links = _header_links(response)
        assert links == _body_links(body["links"]), url
        assert [link["rel"] for link in links] == ["self", "alternate", "next"]
        assert links[1]["type"] == "text/html" and "f=html" in links[1]["href"]
        assert "'" not in response.headers["link"]  # which a header parser might strip
        last = client.get(links[2]["href"].replace("limit=600", "limit=10000"), headers=auth)
    assert "next" not in last.links and "next" not in {
        link["rel"] for link in last.json()["links"]}


def test_items_and_one_item_as_html_pages(client: TestClient) -> None:
    auth = login(client, "planner")
    page = client.get("/collections/waste_points/items?f=html&limit=5", headers=auth)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "垃圾投放点 Waste drop points" in text and "桶数 Bins" in text
    assert "微网格 Micro-grid" in text and text.count("<tr>") == 6  # the head and 5 features
    assert "共 300 of 300" in text  # numberMatched: the whole layer
    assert not re.search(r"""(src|href)=['"](?!http://testserver/)""", text)  # no CDN
    links = {link["rel"]: link for link in _header_links(page)}
    assert links["next"]["type"] == "text/html" and "f=html" in links["next"]["href"]
    assert links["alternate"]["type"] == "application/geo+json"
    fid = re.search(r"items/(\d+)\?f=html", text).group(1)  # type: ignore[union-attr]
    one = client.get(f"/collections/waste_points/items/{fid}",
                     headers={**auth, "Accept": "text/html"})
    assert one.headers["content-type"].startswith("text/html")
    assert f"垃圾投放点 Waste drop points {fid}" in one.text and "状态 State" in one.text
    assert "ETag" not in one.headers  # the feature's ETag names its GeoJSON
    assert one.links["alternate"]["type"] == "application/geo+json"
    # f=html wins over an Accept that asks for GeoJSON, and f=json over a browser's Accept
    assert client.get(f"/collections/waste_points/items/{fid}?f=json", headers={
        **auth, "Accept": "text/html"}).headers["content-type"] == "application/geo+json"


def test_landing_links_lead_somewhere(client: TestClient) -> None:
    auth = login(client, "planner")
    for link in client.get("/").json()["links"]:
        path = link["href"].removeprefix("http://testserver")
        assert client.get(path, headers=auth).status_code == 200, path


def test_options_answers_allow(client: TestClient) -> None:
    for path in ["/collections/buildings/items", "/collections/buildings/items/1",
                 "/auth/token"]:
        response = client.options(path)
        assert response.status_code == 204, path
        assert "OPTIONS" in response.headers["allow"]
    assert "POST" in client.options("/auth/token").headers["allow"]
    assert "GET" in client.options("/collections").headers["allow"]
    assert client.options("/no/such/path").status_code == 404
    # which bodies PATCH and POST take (RFC 5789 §3.1; OGC API - Features Part 4)
    one = client.options("/collections/buildings/items/1")
    assert one.headers["accept-patch"].split(", ") == [
        "application/merge-patch+json", "application/geo+json", "application/json"]
    assert "application/geo+json" in client.options(
        "/collections/buildings/items").headers["accept-post"]
    assert "accept-post" not in client.options("/auth/token").headers


def test_collections_as_html_for_a_browser(client: TestClient, sample_db: Database) -> None:
    auth = login(client, "planner")
    listing = client.get("/collections?f=html", headers=auth)
    assert listing.headers["content-type"].startswith("text/html")
    assert "建筑 Buildings" in listing.text and "/collections/buildings/items" in listing.text
    buildings = sample_db.scalar("SELECT count(*) FROM twin.features WHERE layer = 'buildings'")
    assert f"<td>{buildings:,}</td>" in listing.text  # each layer's count
    one = client.get("/collections/buildings", headers={**auth, "Accept": "text/html"})
    assert one.headers["content-type"].startswith("text/html") and "建筑" in one.text
