"""Reads sent to a read replica (TWIN_REPLICA_URLS, api.replicas), against a real streaming
standby of a scratch cluster of the test's own holding the sample twin, over HTTP: through
the app served in this process, and through `twin serve --workers 2`. Each answer says where
it was read (Twin-Read-From)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import Engine, text

from api.app import ROUTERS
from api.replicas import PROBE_NAME, PROBE_S
from tests.api.test_serve import first_answer, free_port
from tests.conftest import DEMO_PASSWORD, ROOT, run_twin, serve
from twin.settings import Settings
from twin.store.cluster import Cluster, local_cluster
from twin.store.db import EditContext, editing, make_engine
from twin.store.migrate import migrate
from twin.store.replicas import Replica, add_replica, replicas

WORKER = "worker-310115010021-03"  # a worker of the sample (the README's)
WAIT_S = 30.0  # a hang guard (a busy machine is slow)


@dataclass
class Twin:
    """The scratch cluster, its replica, and the owner's engine on the primary."""

    data_dir: Path
    cluster: Cluster
    replica: Replica
    owner: Engine

    def settings(self, max_lag_s: float = 1.0) -> Settings:
        return Settings(database_url=None, data_dir=self.data_dir, db_port=5432,
                        db_name="twin", demo_password=DEMO_PASSWORD,
                        replica_urls=[self.replica.cluster.app_url],
                        replica_max_lag_s=max_lag_s)

    def building(self, offset: int) -> tuple[int, str]:
        """A building no other test writes, and its ETag."""
        with self.owner.connect() as conn:
            fid, version = conn.execute(text(
                "SELECT id, version FROM twin.features WHERE layer = 'buildings' ORDER BY id "
                "OFFSET :offset LIMIT 1"), {"offset": offset}).one()
        return fid, f'"{fid}-{version}"'

    def replay(self, paused: bool) -> None:
        action = "pause" if paused else "resume"
        self.replica.cluster.psql(f"SELECT pg_wal_replay_{action}()")


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    data_dir = ROOT / ".twin" / f"test-reads-{uuid.uuid4().hex[:8]}"
    cluster = local_cluster(Settings(data_dir=data_dir, db_port=5432, db_name="twin"))
    cluster.start()
    owner = make_engine(cluster.admin_url, pool_size=1)
    try:
        migrate(owner, cluster.app_role)
        loaded = run_twin("sample", "--cases", "0", "--orders", "0", env=_env(data_dir))
        assert loaded.returncode == 0, loaded.stderr
        yield Twin(data_dir, cluster, add_replica(cluster), owner)
    finally:
        owner.dispose()
        for made in replicas(cluster):
            _halt(made.cluster)
        _halt(cluster)
        shutil.rmtree(cluster.pgdata.parent, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def _env(data_dir: Path) -> dict[str, str]:
    """The environment of `twin` for the scratch twin."""
    return {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"} | {
        "TWIN_DATA_DIR": str(data_dir), "TWIN_DB_PORT": "5432", "TWIN_DB_NAME": "twin",
        "TWIN_DEMO_PASSWORD": DEMO_PASSWORD}


def _halt(cluster: Cluster) -> None:
    """Stop a scratch cluster about to be deleted, without its shutdown checkpoint."""
    subprocess.run(cluster.as_owner([str(cluster.bindir / "pg_ctl"), "-D", str(cluster.pgdata),
                                     "-m", "immediate", "-w", "stop"]),
                   capture_output=True, check=False)


def _token(url: str, user: str) -> dict[str, str]:
    answer = httpx.post(f"{url}/auth/token", data={"username": user, "password": DEMO_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _from(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return answer.headers["twin-read-from"]


def test_the_routes_that_may_read_a_replica_are_the_ones_marked() -> None:
    marked = {f"{method} {route.path}" for router in ROUTERS for route in router.routes
              if isinstance(route, APIRoute) and getattr(route.endpoint, "twin_replica_read",
                                                         False)
              for method in route.methods}
    assert marked == {
        "GET /collections/{layer}/items", "GET /collections/{layer}/items/{fid}",
        "GET /kpis", "GET /kpis/cases", "GET /kpis/hotline", "GET /changes/heat",
        "GET /reports/changes", "GET /analysis/coverage",
        "GET /analysis/coverage/buildings/{building_id}", "GET /analysis/coverage/what-if",
        "POST /analysis/siting", "GET /analysis/fire-access"}


def test_planners_and_commanders_read_the_replica_everyone_else_the_primary(
        twin: Twin) -> None:
    with serve(twin.settings()) as url:
        planner, commander = _token(url, "planner"), _token(url, "commander")
        worker, admin = _token(url, WORKER), _token(url, "admin")
        item = f"{url}/collections/buildings/items/{twin.building(0)[0]}"
        _until(lambda: httpx.get(f"{url}/ready").json()["read_from"][0]["read_from"],
               "the replica was never probed usable")
        # a token's role is learnt on the primary at its first hot read; the next reads go
        # to the replica, and a route that signs its user in (kpis) knows the role at once
        assert [_from(httpx.get(item, headers=planner)) for _ in range(3)] == \
            ["primary", "replica-1", "replica-1"]
        assert _from(httpx.get(f"{url}/kpis?by=grid", headers=commander)) == "replica-1"
        assert _from(httpx.get(f"{url}/analysis/fire-access", headers=planner)) == "replica-1"
        assert _from(httpx.post(f"{url}/analysis/siting", headers=planner, json={
            "layer": "charging_points", "n": 1, "time_limit_s": 2})) == "replica-1"
        page = f"{url}/collections/buildings/items?limit=5&bbox=121.50,31.18,121.52,31.20"
        assert [_from(httpx.get(page, headers=commander)) for _ in range(2)] == \
            ["primary", "replica-1"]
        for who in (worker, admin):
            assert {_from(httpx.get(f"{url}/collections/waste_points/items?limit=2",
                                    headers=who)) for _ in range(3)} == {"primary"}
            assert _from(httpx.get(f"{url}/kpis", headers=who)) == "primary"
        gone = httpx.get(item)  # no token: the primary refuses it
        assert gone.status_code == 401 and gone.headers["twin-read-from"] == "primary"
        # routes not marked say nothing: they always read the primary
        assert "twin-read-from" not in httpx.get(f"{url}/changes?limit=1",
                                                 headers=planner).headers
        metrics = httpx.get(f"{url}/metrics").text
        assert 'twin_reads_total{target="replica-1"}' in metrics
        assert 'twin_reads_total{target="primary"}' in metrics
        seen = httpx.get(f"{url}/ready").json()["read_from"]
        assert seen[0]["name"] == "replica-1" and seen[0]["why_not"] is None
        assert 0 <= seen[0]["lag_s"] <= 1


def _writes_and_reads(url: str, twin: Twin, building: int, rounds: int,
                      client: httpx.Client) -> None:
    """A planner writes a building's households and reads it straight back, ``rounds``
    times with the replica's replay paused (every read must go to the primary), then as many
    with it running; a read never misses its write. A commander, who wrote nothing, reads
    the paused replica's older copy meanwhile: it was usable, and stale."""
    planner, commander = _token(url, "planner"), _token(url, "commander")
    fid, etag = twin.building(building)
    item = f"{url}/collections/buildings/items/{fid}"
    before = client.get(item, headers=planner).json()["properties"]["households"]
    where: list[str] = []

    def write_then_read(households: int) -> None:
        nonlocal etag
        wrote = client.patch(item, headers={**planner, "If-Match": etag}, json={
            "type": "Feature", "properties": {"households": households}})
        assert wrote.status_code == 200, wrote.text
        etag = wrote.headers["etag"]
        read = client.get(item, headers=planner)
        where.append(_from(read))
        assert read.headers["etag"] == etag, f"read {read.headers['etag']} after {etag}"
        assert read.json()["properties"]["households"] == households

    twin.replay(paused=True)
    try:
        for n in range(rounds):
            write_then_read(before + 1 + n)

        def stale() -> bool:
            read = client.get(item, headers=commander)
            return _from(read) == "replica-1" and \
                read.json()["properties"]["households"] == before

        _until(stale, "the commander never read the paused replica")
        assert set(where) == {"primary"}  # the paused replica never had the planner's writes
    finally:
        twin.replay(paused=False)
    where.clear()
    for n in range(rounds):
        write_then_read(before + 1 + rounds + n)
    time.sleep(3 * PROBE_S)  # probed since the last write: the replica has it

    def from_the_replica() -> bool:
        read = client.get(item, headers=planner)
        assert read.headers["etag"] == etag
        return _from(read) == "replica-1"

    _until(from_the_replica, "the planner's reads never went back to the replica")


def test_a_client_reads_its_own_writes(twin: Twin) -> None:
    with serve(twin.settings(max_lag_s=60)) as url, httpx.Client() as client:
        _writes_and_reads(url, twin, 1, 150, client)


@contextmanager
def _twin_serve(twin: Twin, *args: str) -> Iterator[str]:
    """`twin serve ARGS` against the scratch twin, with its replica; its base URL."""
    port = free_port()
    settings = twin.settings(max_lag_s=60)
    env = _env(twin.data_dir) | {"TWIN_REPLICA_URLS": settings.replica_urls[0],
                                 "TWIN_REPLICA_MAX_LAG_S": "60"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "twin"), "serve", "--port",
                               str(port), *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        first_answer(server, f"{url}/health")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_client_reads_its_own_writes_whichever_worker_answers(twin: Twin) -> None:
    """Every request on a new connection, so either worker may take it: a write answered by
    one is known by the other before the client hears of it (api.replicas.WriteMarks)."""
    with _twin_serve(twin, "--workers", "2") as url, httpx.Client(
            limits=httpx.Limits(max_keepalive_connections=0)) as client:
        _writes_and_reads(url, twin, 2, 100, client)


def test_a_stopped_replica_is_skipped_and_read_again_when_back(twin: Twin) -> None:
    with serve(twin.settings()) as url:
        planner = _token(url, "planner")
        item = f"{url}/collections/buildings/items/{twin.building(3)[0]}"
        _until(lambda: _from(httpx.get(item, headers=planner)) == "replica-1",
               "the replica was never read")
        # the reading connections end (the probe's live on): the next read fails on one,
        # is read again on the primary, and the replica is skipped till the next probe
        twin.replica.cluster.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = "
            f"'twin_app' AND application_name <> '{PROBE_NAME}'")
        assert _from(httpx.get(item, headers=planner)) == "primary"
        _until(lambda: _from(httpx.get(item, headers=planner)) == "replica-1",
               "the replica was not read again after its connections ended")
        twin.replica.cluster.stop()
        try:
            # its pooled connections die with it: the reads they fail are read again on the
            # primary; then the probe skips it
            for path in (item, f"{url}/kpis", f"{url}/changes/heat") * 5:
                assert _from(httpx.get(path, headers=planner)) == "primary", path
            why = httpx.get(f"{url}/ready").json()["read_from"][0]["why_not"]
            assert "failed" in why
        finally:
            twin.replica.cluster.start_standby(twin.replica.slot)
        _until(lambda: _from(httpx.get(item, headers=planner)) == "replica-1",
               "the replica was not read again once back")
        assert _from(httpx.get(f"{url}/kpis", headers=planner)) == "replica-1"


def test_a_replica_paused_past_the_limit_is_skipped(twin: Twin) -> None:
    with serve(twin.settings(max_lag_s=0.5)) as url:
        planner = _token(url, "planner")
        item = f"{url}/collections/buildings/items/{twin.building(4)[0]}"
        _until(lambda: _from(httpx.get(item, headers=planner)) == "replica-1",
               "the replica was never read")
        twin.replay(paused=True)
        try:
            with editing(twin.owner, EditContext("pytest", "admin", reason="replica test")
                         ) as conn:  # someone else writes: the primary moves on
                conn.execute(text("UPDATE twin.features SET name = 'moved on' WHERE id = "
                                  ":id"), {"id": twin.building(5)[0]})
            _until(lambda: _from(httpx.get(item, headers=planner)) == "primary",
                   "the paused replica was not skipped")
            why = httpx.get(f"{url}/ready").json()["read_from"][0]["why_not"]
            assert "behind" in why and "TWIN_REPLICA_MAX_LAG_S" in why
        finally:
            twin.replay(paused=False)
        _until(lambda: _from(httpx.get(item, headers=planner)) == "replica-1",
               "the replica was not read again once caught up")
