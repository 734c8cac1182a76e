"""`twin sample` and `twin stats` from the command line, and what the sample twin holds."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tests.conftest import SEED, Database, run_twin
from twin.maps.kpis import group_kpis


def _stats(db: Database) -> dict[str, object]:
    done = run_twin("stats", "--json", env=db.env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_cli_loads_the_same_twin_for_the_same_seed(db: Database,
                                                       sample_db: Database) -> None:
    done = run_twin("sample", "--seed", str(SEED), env=db.env())
    assert done.returncode == 0, done.stderr
    assert "loaded" in done.stdout
    mine, template = _stats(db), _stats(sample_db)
    assert mine["content_hash"] == template["content_hash"]
    assert mine["layers"] == template["layers"]


def test_a_different_seed_gives_a_different_twin(db: Database, sample_db: Database) -> None:
    assert run_twin("sample", "--seed", str(SEED + 1), env=db.env()).returncode == 0
    assert _stats(db)["content_hash"] != _stats(sample_db)["content_hash"]


def test_sample_refuses_a_twin_that_has_features(sample_db: Database) -> None:
    before = _stats(sample_db)
    skipped = run_twin("sample", "--if-empty", env=sample_db.env())
    assert skipped.returncode == 0 and "not loaded" in skipped.stdout
    refused = run_twin("sample", env=sample_db.env())
    assert refused.returncode == 1 and "empty database" in refused.stderr
    assert _stats(sample_db) == before


def test_the_sample_is_the_subdistrict_the_report_describes(sample_db: Database) -> None:
    stats = _stats(sample_db)
    layers = stats["layers"]
    assert isinstance(layers, dict)
    assert layers["residential_areas"] == 27
    assert layers["micro_grids"] == 263
    assert 3000 <= layers["buildings"] <= 6000
    assert 250 <= layers["waste_points"] <= 350
    assert (layers["gas_hazards"], layers["escape_checks"], layers["escape_openings"]) == (
        32, 198, 489)
    assert layers["fire_passages"] != 489  # fire lanes, apart from the escape openings
    meta = stats["metadata"]
    assert isinstance(meta, dict) and meta["dataset"]["synthetic"] is True
    with sample_db.app.connect() as conn:
        sites = dict(conn.execute(text(
            "SELECT props->>'site_type', count(*) FROM twin.features "
            "WHERE layer = 'charging_points' GROUP BY 1")).all())
        west = conn.execute(text("SELECT ST_XMin(ST_Extent(geom)), ST_Area(ST_Union(geom)::"
                                 "geography) / 1e6 FROM twin.features "
                                 "WHERE layer = 'residential_areas'")).one()
    assert sites["underground"] + sites["semi_underground"] == 32
    assert sites["elevated_floor"] == 16
    assert 2.5 < west[1] < 3.3  # km², about 2.9
    assert 121.48 < west[0] < 121.52


def test_stats_prints_a_table(sample_db: Database) -> None:
    done = run_twin("stats", env=sample_db.env())
    assert done.returncode == 0
    assert "buildings" in done.stdout and "content hash" in done.stdout


def test_the_sample_is_dated_at_the_start_of_its_period(db: Database) -> None:
    """Loaded by its owner, the sample is stamped at its spec's first moment (where a history
    follows): the board of a fresh twin counts none of it as edits today."""
    owner = {**db.env(), "TWIN_DATABASE_URL": db.admin_url}
    done = run_twin("sample", "--cases", "0", "--orders", "0", env=owner)
    assert done.returncode == 0, done.stderr
    with db.app.connect() as conn:
        first, last = conn.execute(text(
            "SELECT min(server_time), max(server_time) FROM twin.changes")).one()
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert first == last == start
    with db.app.connect() as conn:
        groups = group_kpis(conn, "grid", "Asia/Shanghai")["groups"]
    assert len(groups) == 263 and sum(g["edits_today"] for g in groups) == 0
    assert sum(g["edits_7_days"] for g in groups) == 0


def test_a_bad_setting_is_named_not_a_traceback(sample_db: Database) -> None:
    for env, named in (({"TWIN_TIME_ZONE": "Foo/Bar"}, "TWIN_TIME_ZONE='Foo/Bar'"),
                       ({"TWIN_BASEMAP": "tianditu"}, "TWIN_TIANDITU_KEY")):
        done = run_twin("stats", env={**sample_db.env(), **env})
        assert done.returncode == 2, done.stderr
        assert named in done.stderr and "Traceback" not in done.stderr
