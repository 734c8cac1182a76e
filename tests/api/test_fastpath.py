"""The fast path's contract: the hot read routes answer exactly as FastAPI's stack would.

The same good and bad requests go to the service with its fast path and to one without it
(``create_app(..., fast_path=False)``), on one database; status, headers and body must be
the same, gzipped or not. A middleware the fast path does not mirror stops the app at start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.middleware.trustedhost import TrustedHostMiddleware

from api.app import ROUTERS, create_app
from api.fastpath import hot_routes
from tests.conftest import Database, login


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


def test_the_same_requests_get_the_same_answers(both: tuple[TestClient, TestClient],
                                                sample_db: Database) -> None:
    fast, stack = both
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
    ]
    for path, headers in requests:
        for encoding in ("identity", "gzip"):
            sent = {**headers, "Accept-Encoding": encoding}
            a, b = fast.get(path, headers=sent), stack.get(path, headers=sent)
            where = f"{path} {encoding}"
            assert a.status_code == b.status_code, where
            assert dict(a.headers) == dict(b.headers), where
            assert a.content == b.content, where
            assert fast.head(path, headers=sent).status_code == a.status_code, where


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
