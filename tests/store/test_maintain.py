"""Versions kept per month they closed in, and `twin db maintain`, which sorts finished months."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from tests.conftest import SEED, Database, Server, login, run_twin
from twin.store.maintain import make_partitions

PARTITION_OF = """SELECT tableoid::regclass::text FROM twin.feature_versions
                   WHERE feature_id = :id AND version = :version"""
# The versions current in the middle of each month of the sample spec's history period.
MOMENTS = [f"2026-{month:02d}-15T04:00:00Z" for month in range(1, 7)]


@pytest.fixture(scope="module")
def history(server: Server, empty_template: str) -> Iterator[Database]:
    db = server.create(f"twin_test_{uuid.uuid4().hex[:10]}", template=empty_template)
    done = run_twin("sample", "--seed", str(SEED), "--cases", "0", "--orders", "0",
                    "--history", "1500", "--jobs", "1",
                    env={**db.env(), "TWIN_DATABASE_URL": db.admin_url})
    assert done.returncode == 0, done.stderr
    yield db
    server.drop(db)


def _as_of_pages(db: Database) -> dict[str, list[tuple[int, int]]]:
    """Each moment's waste points as the API gives them: (id, version) pairs."""
    with TestClient(create_app(db.settings())) as client:
        auth = login(client, "planner")
        pages = {}
        for moment in MOMENTS:
            page = client.get(f"/collections/waste_points/items?limit=5000&asOf={quote(moment)}",
                              headers=auth)
            assert page.status_code == 200, page.text
            pages[moment] = sorted((f["id"], f["properties"]["version"])
                                   for f in page.json()["features"])
    return pages


def _unsorted(db: Database) -> list[str]:
    with db.admin.connect() as conn:
        return list(conn.execute(text("SELECT part::text FROM twin.unsorted_version_months"))
                    .scalars())


def test_maintain_sorts_each_finished_month_once_and_changes_no_answer(
        history: Database) -> None:
    before = _as_of_pages(history)
    months = [f"twin.feature_versions_2026_{m:02d}" for m in range(1, 7)]
    assert set(months) <= set(_unsorted(history))
    env = {**history.env(), "TWIN_DATABASE_URL": history.admin_url}

    done = run_twin("db", "maintain", env=env)

    assert done.returncode == 0, done.stderr
    assert "months sorted by place" in done.stdout
    assert all(month in done.stdout for month in months)
    assert _unsorted(history) == []
    with history.admin.connect() as conn:
        clustered = set(conn.execute(text(
            "SELECT indrelid::regclass::text FROM pg_index WHERE indisclustered")).scalars())
        # sorted by place, then by when each version began: a month's rows in that order
        first = [tuple(row) for row in conn.execute(text(
            "SELECT ST_GeoHash(geom, 7), lower(valid) FROM twin.feature_versions_2026_03 "
            "ORDER BY ctid"))]
    assert set(months) <= clustered
    assert first == sorted(first)
    assert _as_of_pages(history) == before
    assert any(before.values())  # the moments hold features, so the comparison means something
    again = run_twin("db", "maintain", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 months sorted" in again.stdout


def test_a_version_closed_in_a_month_without_partition_waits_then_moves(
        sample_db: Database) -> None:
    with sample_db.admin.begin() as conn:
        fid = conn.execute(text("SELECT min(id) FROM twin.features WHERE layer = 'waste_points'")
                           ).scalar_one()
        conn.execute(text("SELECT set_config('twin.clock', '2030-03-15T02:00:00Z', true)"))
        conn.execute(text("UPDATE twin.features SET name = 'moved on' WHERE id = :id"),
                     {"id": fid})
    key = {"id": fid, "version": 1}
    with sample_db.admin.begin() as conn:
        assert conn.execute(text(PARTITION_OF), key).scalar_one() == (
            "twin.feature_versions_default")
        assert make_partitions(conn, datetime(2030, 3, 1, tzinfo=UTC),
                               datetime(2030, 3, 31, tzinfo=UTC)) == 1
        assert conn.execute(text(PARTITION_OF), key).scalar_one() == (
            "twin.feature_versions_2030_03")
        assert conn.execute(text("SELECT count(*) FROM twin.feature_versions_default")
                            ).scalar_one() == 0
        as_of = conn.execute(text(
            "SELECT version FROM twin.feature_versions WHERE feature_id = :id "
            "AND valid @> CAST('2030-03-10T00:00:00Z' AS timestamptz)"), {"id": fid}).scalar_one()
        assert as_of == 1


@pytest.mark.parametrize("statement", [
    "DELETE FROM twin.feature_versions_open",
    "DELETE FROM twin.feature_versions_default",
    "TRUNCATE twin.feature_versions_open",
    "UPDATE twin.feature_versions_open SET props = '{}'",
])
def test_no_partition_of_the_versions_can_be_rewritten(sample_db: Database,
                                                         statement: str) -> None:
    with sample_db.admin.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM twin.feature_versions")).scalar_one()
    with pytest.raises(DBAPIError, match=r"refused|is history"), sample_db.admin.begin() as conn:
        conn.execute(text(statement))
    with sample_db.admin.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM twin.feature_versions")
                            ).scalar_one() == count


def test_maintain_on_a_database_not_migrated_says_so(server: Server) -> None:
    db = server.create(f"twin_test_{uuid.uuid4().hex[:10]}")
    try:
        done = run_twin("db", "maintain", env={**db.env(), "TWIN_DATABASE_URL": db.admin_url})
    finally:
        server.drop(db)
    assert done.returncode == 1
    assert "twin db migrate" in done.stderr and "Traceback" not in done.stderr
