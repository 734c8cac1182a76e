"""What process managers and Prometheus ask: /health, /ready (and its 503 while the database
is gone, recovering by itself), /metrics counting requests by route template; every answer
carries a request id; a request while the database is gone is a 503 with Retry-After."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from tests.api.test_serve import first_answer, serve
from tests.conftest import Database, Server, login


def _count(metrics: str, route: str, status: str) -> float:
    """How many requests of ``route`` answered ``status``, by the histogram's count."""
    found = re.search(r'twin_http_request_duration_seconds_count\{method="GET",route="'
                      + re.escape(route) + r'",status="' + status + r'"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


@contextmanager
def _database_gone(server: Server, db: Database) -> Iterator[None]:
    """No connection to ``db`` for a while: those open are ended, new ones refused (as while
    PostgreSQL restarts), then allowed again."""
    with server.maintenance.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{db.name}" ALLOW_CONNECTIONS false'))
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :name"), {"name": db.name})
    try:
        yield
    finally:
        with server.maintenance.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{db.name}" ALLOW_CONNECTIONS true'))


def test_health_ready_and_metrics_count_requests_by_route(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    auth = login(client, "planner")
    before = client.get("/metrics").text
    page = client.get("/collections/waste_points/items?limit=2", headers={
        **auth, "X-Request-Id": "tablet-7.req-42"})
    assert page.status_code == 200 and page.headers["x-request-id"] == "tablet-7.req-42"
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/collections", headers=auth)
                        .headers["x-request-id"])  # none sent: one made
    assert client.get("/collections/nope/items", headers=auth).status_code == 404
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    after = metrics.text
    # the fast path's hot route and the stack's route, each by its template, never by path
    assert _count(after, "/collections/{layer}/items", "200") == \
        _count(before, "/collections/{layer}/items", "200") + 1
    assert _count(after, "/collections", "200") == _count(before, "/collections", "200") + 1
    assert _count(after, "/collections/{layer}/items", "404") >= 1
    assert "/collections/nope" not in after
    assert re.search(r"^twin_changes_total \d", after, re.M)
    assert re.search(r"^twin_database_up 1", after, re.M)
    assert 'twin_db_pool_connections{state="max"} 10.0' in after


def test_while_the_database_is_gone_answers_are_503_and_it_recovers_by_itself(
        server: Server, sample_db: Database) -> None:
    with TestClient(create_app(sample_db.settings()), raise_server_exceptions=False) as client:
        auth = login(client, "planner")
        assert client.get("/collections/waste_points/items?limit=1",
                          headers=auth).status_code == 200
        with _database_gone(server, sample_db):
            assert client.get("/health").status_code == 200  # the process lives
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
            for path in ("/collections/waste_points/items?limit=1", "/changes?limit=1"):
                gone = client.get(path, headers=auth)
                assert gone.status_code == 503, (path, gone.text)
                assert gone.headers["retry-after"] == "5"
                assert gone.json()["code"] == "DatabaseUnavailable"
            # Open311 says it in the spec's error list, with the same status and header
            spec = client.get("/open311/v2/requests.json")
            assert spec.status_code == 503 and spec.headers["retry-after"] == "5"
            assert spec.json()[0]["code"] == 503
            assert "not answering" in spec.json()[0]["description"]
            assert re.search(r"^twin_database_up 0", client.get("/metrics").text, re.M)
        deadline = time.monotonic() + 60  # a hang guard (a busy machine is slow)
        while client.get("/ready").status_code != 200:  # the pools reconnect by themselves
            assert time.monotonic() < deadline, "the service did not recover"
            time.sleep(0.2)
        assert client.get("/collections/waste_points/items?limit=1",
                          headers=auth).status_code == 200
        assert client.get("/changes?limit=1", headers=auth).status_code == 200



def test_a_server_started_while_the_database_is_gone_waits_for_it(
        server: Server, sample_db: Database) -> None:
    """Found by bench/chaos.py: a worker that `twin serve --workers N` started again while
    PostgreSQL restarted failed its start-up, and uvicorn then stopped the whole server."""
    client = TestClient(create_app(sample_db.settings()), raise_server_exceptions=False)
    with _database_gone(server, sample_db):
        client.__enter__()  # the app starts (its lifespan runs) without its database
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
    try:
        deadline = time.monotonic() + 60  # a hang guard (a busy machine is slow)
        while client.get("/ready").status_code != 200:  # back by itself
            assert time.monotonic() < deadline, "the service did not recover"
            time.sleep(0.2)
        assert client.get("/collections/waste_points/items?limit=1",
                          headers=login(client, "planner")).status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_twin_serve_started_before_its_database_serves_and_recovers(
        server: Server, sample_db: Database) -> None:
    """At boot the server may start before PostgreSQL answers: it warns and serves (503s
    with Retry-After) rather than exit, and is ready once the database answers."""
    with _database_gone(server, sample_db):
        process, base = serve(sample_db.env())
        try:
            ready = first_answer(process, f"{base}/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
            assert httpx.get(f"{base}/health").status_code == 200
        except BaseException:
            process.kill()
            raise
    try:
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "serving anyway" in output
