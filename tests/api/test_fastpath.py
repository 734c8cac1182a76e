"""The fast path's contract: the hot read routes answer exactly as FastAPI's stack would.

The same good and bad requests go to the service with its fast path and to one without it
(``create_app(..., fast_path=False)``), on one database; status, headers (Link and CORS
ones too) and body must be the same, gzipped or not. A middleware the fast path does not
mirror stops the app at start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from api.app import ROUTERS, create_app
from api.fastpath import hot_routes
from tests.conftest import DEMO_PASSWORD, Database, login
from twin.settings import Settings

ORIGIN = "https://gis.example.cn"


@pytest.fixture
def both(sample_db: Database) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(sample_db.settings())) as fast, \
            TestClient(create_app(sample_db.settings(), fast_path=False)) as stack:
        yield fast, stack


def test_the_hot_routes_are_the_ones_marked() -> None:
    assert set(hot_routes([route for router in ROUTERS for route in router.routes])) == {
        "/collections/{layer}/items", "/collections/{layer}/items/{fid}",
        "/collections/{layer}/tiles/WebMercatorQuad/{z}/{x}/{y}",
        "/collections/{layer}/items/{fid}/history"}


@pytest.fixture
def both_cors(sample_db: Database) -> Iterator[tuple[TestClient, TestClient]]:
    settings = Settings(database_url=sample_db.app_url, demo_password=DEMO_PASSWORD,
                        cors_origins=f"{ORIGIN}, http://localhost:5173/")
    with TestClient(create_app(settings)) as fast, \
            TestClient(create_app(settings, fast_path=False)) as stack:
        yield fast, stack


def _requests(fast: TestClient, sample_db: Database) -> list[tuple[str, dict[str, str]]]:
    """Good and bad requests to every hot route."""
    auth = login(fast, "planner")
    fid, version = sample_db.one("SELECT id, version FROM twin.features "
                                 "WHERE layer = 'waste_points' ORDER BY id LIMIT 1")
    etag = f'"{fid}-{version}"'
    requests: list[tuple[str, dict[str, str]]] = [
        ("/collections/buildings/items?limit=3", auth),
        ("/collections/buildings/items?limit=2000", auth),  # streamed in chunks
        ("/collections/waste_points/items?bbox=121.50,31.18,121.52,31.20&limit=50", auth),
        ("/collections/waste_points/items?filter=state%3D%27full%27&limit=5", auth),
        ("/collections/buildings/items?bbox=1,2,3", auth),
        ("/collections/buildings/items?filter=nonsense%20%3D", auth),
        ("/collections/buildings/items?limit=0", auth),
        ("/collections/nowhere/items", auth),
        ("/collections/buildings/items", {}),
        ("/collections/buildings/items", {"Authorization": "Bearer not-a-token"}),
        ("/collections/buildings/items", {"Accept": "text/html"}),  # a browser: sign in
        (f"/collections/waste_points/items/{fid}", auth),
        (f"/collections/waste_points/items/{fid}", {**auth, "If-None-Match": etag}),
        ("/collections/waste_points/items/99999999", auth),
        ("/collections/waste_points/items/not-an-id", auth),
        (f"/collections/waste_points/items/{fid}/history", auth),
        (f"/collections/waste_points/items/{fid}/history?cursor=x", auth),
        ("/collections/waste_points/items/99999999/history", auth),
        ("/collections/buildings/tiles/WebMercatorQuad/15/27437/13397", auth),
        ("/collections/buildings/tiles/WebMercatorQuad/15/99999/13397", auth),
        ("/collections/buildings/tiles/WebMercatorQuad/x/1/1", auth),
        ("/collections/buildings/items?limit=3&f=html", auth),
        ("/collections/buildings/items?limit=3&filter=floors%3E3", auth),
        (f"/collections/waste_points/items/{fid}?f=html", auth),
        (f"/collections/waste_points/items/{fid}?crs=EPSG:4326", auth),
        (f"/collections/waste_points/items/{fid}", {**auth, "If-None-Match": f"W/{etag}"}),
    ]
    return requests


def _same_answers(fast: TestClient, stack: TestClient,
                  requests: list[tuple[str, dict[str, str]]]) -> None:
    for path, headers in requests:
        for encoding in ("identity", "gzip"):
            # the request id is echoed: the same id sent, the same header answered
            sent = {**headers, "Accept-Encoding": encoding, "X-Request-Id": "same-request"}
            a, b = fast.get(path, headers=sent), stack.get(path, headers=sent)
            where = f"{path} {encoding}"
            assert a.status_code == b.status_code, where
            assert dict(a.headers) == dict(b.headers), where
            assert a.content == b.content, where
            assert fast.head(path, headers=sent).status_code == a.status_code, where


def test_the_same_requests_get_the_same_answers(both: tuple[TestClient, TestClient],
                                                sample_db: Database) -> None:
    fast, stack = both
    requests = _requests(fast, sample_db)
    _same_answers(fast, stack, requests)
    answer = fast.get(requests[0][0], headers=requests[0][1])
    assert answer.links["next"]["type"] == "application/geo+json"  # Link on the fast path
    assert not any(h.startswith("access-control-") for h in answer.headers)  # CORS: off


def test_cors_for_named_origins_alike_on_the_hot_routes(
        both_cors: tuple[TestClient, TestClient], sample_db: Database) -> None:
    fast, stack = both_cors
    requests = _requests(fast, sample_db)
    for origin in (ORIGIN, "http://localhost:5173", "https://elsewhere.example"):
        _same_answers(fast, stack, [(path, {**headers, "Origin": origin})
                                    for path, headers in requests])
    items, auth = requests[0]
    allowed = fast.get(items, headers={**auth, "Origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert {"ETag", "Link"} <= set(allowed.headers["access-control-expose-headers"].split(", "))
    other = fast.get(items, headers={**auth, "Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers
    # a preflight of an edit on a hot route's path (an OPTIONS: never the fast path's)
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "PATCH",
                 "Access-Control-Request-Headers": "authorization, content-type, if-match"}
    for client in (fast, stack):
        answer = client.options("/collections/waste_points/items/1", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert "PATCH" in answer.headers["access-control-allow-methods"]
    refused = fast.options("/collections/waste_points/items/1",
                           headers={**preflight, "Origin": "https://elsewhere.example"})
    assert refused.status_code == 400 and "origin" in refused.text
    # an OPTIONS that is no preflight still answers Allow
    assert "PATCH" in fast.options("/collections/waste_points/items/1").headers["allow"]


@pytest.mark.parametrize("origins", ["*", "https://gis.example.cn/path", "gis.example.cn"])
def test_cors_origins_must_be_origins(origins: str) -> None:
    with pytest.raises(ValidationError, match="not an origin"):
        Settings(cors_origins=origins)


def test_a_middleware_the_fast_path_does_not_mirror_stops_the_app(
        sample_db: Database) -> None:
    app = create_app(sample_db.settings())
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["testserver"])
    with pytest.raises(RuntimeError, match="TrustedHostMiddleware"), TestClient(app):
        pass
    # without the fast path it is the stack's own business
    plain = create_app(sample_db.settings(), fast_path=False)
    plain.add_middleware(TrustedHostMiddleware, allowed_hosts=["testserver"])
    with TestClient(plain) as client:
        assert client.get("/conformance").status_code == 200
