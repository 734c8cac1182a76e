"""Read replicas as `twin db replica add | list | remove` make them: real streaming standbys
of a scratch cluster of the test's own (its own data folder and socket), migrated to the
twin's schema, following what the triggers write on the primary."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from tests.browser import visit
from tests.conftest import ROOT, run_twin, serve
from twin.settings import Settings
from twin.store.cluster import Cluster, local_cluster
from twin.store.db import EditContext, editing, make_engine
from twin.store.migrate import migrate
from twin.store.replicas import replicas


@pytest.fixture(scope="module")
def primary() -> Iterator[tuple[Cluster, dict[str, str]]]:
    data_dir = ROOT / ".twin" / f"test-replica-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"}
    env.update(TWIN_DATA_DIR=str(data_dir), TWIN_DB_PORT="5432", TWIN_DB_NAME="twin")
    cluster = local_cluster(Settings(data_dir=data_dir, db_port=5432, db_name="twin"))
    cluster.start()
    engine = make_engine(cluster.admin_url, pool_size=1)
    migrate(engine, cluster.app_role)
    engine.dispose()
    yield cluster, env
    for made in replicas(cluster):
        made.cluster.stop()
    cluster.stop()
    shutil.rmtree(cluster.pgdata.parent, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def _listed(env: dict[str, str]) -> list[dict[str, Any]]:
    done = run_twin("db", "replica", "list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)["replicas"]
    return rows


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 60  # a hang guard (a busy machine is slow)
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_replica_streams_what_the_primary_writes_and_goes_with_it(
        primary: tuple[Cluster, dict[str, str]]) -> None:
    cluster, env = primary
    done = run_twin("db", "replica", "add", env=env)
    assert done.returncode == 0, done.stderr
    assert "copying the cluster" in done.stderr  # the progress bar
    assert "replica 1 streaming" in done.stdout and "read-only URL: " in done.stdout
    made = replicas(cluster)
    assert [r.number for r in made] == [1]
    reader = make_engine(made[0].cluster.app_url, pool_size=1)
    writer = make_engine(cluster.admin_url, pool_size=1)
    try:
        with editing(writer, EditContext("pytest", "admin", reason="replica test")) as conn:
            conn.execute(text("INSERT INTO twin.features (layer, name, geom) VALUES "
                              "('waste_points', 'seen on the replica', "
                              "ST_SetSRID(ST_Point(121.51, 31.20), 4326))"))

        def arrived() -> bool:
            with reader.connect() as conn:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM twin.changes c JOIN twin.features f "
                    "ON f.id = c.feature_id WHERE f.name = 'seen on the replica'")).scalar())

        _until(arrived, "the feature and its change never reached the replica")
        with reader.connect() as conn, pytest.raises(DBAPIError, match="read-only"):
            conn.execute(text("DELETE FROM twin.features"))  # reads only
        row = _listed(env)[0]
        assert row["number"] == 1 and row["running"] and row["state"] == "streaming"
        assert row["bytes_behind"] >= 0 and row["lag_s"] >= 0
        # the service shows it: /ready lists it, /metrics gives its lag
        settings = Settings(database_url=None, data_dir=Path(env["TWIN_DATA_DIR"]),
                            db_port=5432, db_name="twin")
        with TestClient(create_app(settings)) as client:
            ready = client.get("/ready").json()
            assert [r["name"] for r in ready["replicas"]] == ["twin_replica_1"]
            assert ready["replicas"][0]["state"] == "streaming"
            scraped = client.get("/metrics").text
            assert re.search(r'^twin_replica_lag_seconds\{replica="twin_replica_1"\} [0-9.e-]+$',
                             scraped, re.M)
            assert 'twin_replica_bytes_behind{replica="twin_replica_1"}' in scraped
        with serve(settings) as url, visit(f"{url}/dashboard") as seen:  # and the board
            seen.page.wait_for_function(
                "() => document.getElementById('replicas').textContent"
                ".includes('只读副本 replica twin_replica_1')", timeout=60_000)
            assert re.search(r"twin_replica_1: \d+\.\d\d s",
                             seen.page.inner_text("#replicas"))
    finally:
        reader.dispose()
        writer.dispose()

    # the replica stops before its primary and starts after it
    stopped = run_twin("db", "stop", env=env)
    assert "replica 1 stopped" in stopped.stdout and "stopped" in stopped.stdout
    assert not made[0].cluster.is_running()
    started = run_twin("db", "start", env=env)
    assert started.returncode == 0, started.stderr
    assert "replica 1 started" in started.stdout
    _until(lambda: _listed(env)[0]["state"] == "streaming", "the replica did not stream again")

    removed = run_twin("db", "replica", "remove", "1", env=env)
    assert removed.returncode == 0, removed.stderr
    assert not made[0].cluster.pgdata.exists()
    assert cluster.psql("SELECT count(*) FROM pg_replication_slots") == "0"
    assert _listed(env) == []


def test_removing_a_replica_that_is_not_there_says_so(
        primary: tuple[Cluster, dict[str, str]]) -> None:
    cluster, env = primary
    before = cluster.psql("SELECT count(*) FROM pg_replication_slots")
    done = run_twin("db", "replica", "remove", "7", env=env)
    assert done.returncode != 0
    assert "no replica 7" in done.stderr
    assert cluster.psql("SELECT count(*) FROM pg_replication_slots") == before
