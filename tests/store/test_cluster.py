"""The project-local cluster: its own socket, no TCP, beside any PostgreSQL on 5432."""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_twin
from twin.settings import Settings
from twin.store.cluster import local_cluster, memory_bytes, sized_to_memory


@pytest.fixture
def cluster_env() -> Iterator[dict[str, str]]:
    """Settings for a second cluster in its own data dir, on the default port number 5432."""
    data_dir = ROOT / ".twin" / f"test-cluster-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"}
    env.update(TWIN_DATA_DIR=str(data_dir), TWIN_DB_PORT="5432", TWIN_DB_NAME="twin")
    yield env
    run_twin("db", "stop", env=env)
    cluster = local_cluster(Settings(data_dir=data_dir))
    shutil.rmtree(cluster.pgdata.parent, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def test_start_status_migrate_stop(cluster_env: dict[str, str]) -> None:
    down = run_twin("db", "status", env=cluster_env)
    assert down.returncode == 1 and "status: down" in down.stdout

    started = run_twin("db", "start", env=cluster_env)
    assert started.returncode == 0, started.stderr
    assert "no TCP" in started.stdout
    again = run_twin("db", "start", env=cluster_env)
    assert "already running" in again.stdout

    status = run_twin("db", "status", env=cluster_env)
    assert status.returncode == 0 and "status: up" in status.stdout
    socket_dir = local_cluster(Settings(data_dir=Path(cluster_env["TWIN_DATA_DIR"]))).socket_dir
    assert f"host={socket_dir}&" in status.stdout  # its own socket, not /var/run/postgresql

    migrated = run_twin("db", "migrate", env=cluster_env)
    assert migrated.returncode == 0, migrated.stderr
    stats = run_twin("stats", "--json", env=cluster_env)
    assert stats.returncode == 0 and '"features": 0' in stats.stdout

    stopped = run_twin("db", "stop", env=cluster_env)
    assert "stopped" in stopped.stdout
    assert run_twin("db", "status", env=cluster_env).returncode == 1


def test_the_server_listens_on_no_tcp_port_and_is_sized_to_the_machine(
        cluster_env: dict[str, str]) -> None:
    assert run_twin("db", "start", env=cluster_env).returncode == 0
    conf = local_cluster(Settings(data_dir=Path(cluster_env["TWIN_DATA_DIR"])))
    assert conf.psql("SHOW listen_addresses") == ""
    quarter = min(max(memory_bytes() // 2**20 // 4, 128), 8192)
    assert conf.psql("SELECT setting::bigint * 8 / 1024 FROM pg_settings "
                     "WHERE name = 'shared_buffers'") == str(quarter)
    assert conf.psql("SHOW random_page_cost") == "1.1"


@pytest.mark.parametrize(("memory_gb", "shared", "cache"), [
    (0.5, "128MB", "256MB"), (2, "512MB", "1024MB"), (24, "6144MB", "12288MB"),
    (256, "8192MB", "131072MB")])
def test_the_page_cache_is_a_quarter_of_memory_within_bounds(memory_gb: float, shared: str,
                                                             cache: str) -> None:
    options = sized_to_memory(int(memory_gb * 2**30))
    assert f"shared_buffers={shared}" in options and f"effective_cache_size={cache}" in options


def test_stats_with_the_database_down_is_a_clear_error(cluster_env: dict[str, str]) -> None:
    done = run_twin("stats", env=cluster_env)
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr and "twin db start" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_deep_checkout_still_gets_a_socket_path_postgres_accepts() -> None:
    deep = ROOT / ".twin" / ("d" * 60) / ("e" * 60)
    cluster = local_cluster(Settings(data_dir=deep))
    assert len(str(cluster.socket_dir / ".s.PGSQL.5432")) < 108
    assert cluster.pgdata.name == "pg"
