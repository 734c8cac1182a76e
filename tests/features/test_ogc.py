"""What an OGC API - Features conformance suite checks first: the definition, the classes,
the links, OPTIONS, and pages for people."""

from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from tests.conftest import login


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
    assert len(classes) == len(set(classes))


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


def test_collections_as_html_for_a_browser(client: TestClient) -> None:
    auth = login(client, "planner")
    listing = client.get("/collections?f=html", headers=auth)
    assert listing.headers["content-type"].startswith("text/html")
    assert "建筑 Buildings" in listing.text and "/collections/buildings/items" in listing.text
    one = client.get("/collections/buildings", headers={**auth, "Accept": "text/html"})
    assert one.headers["content-type"].startswith("text/html") and "建筑" in one.text
