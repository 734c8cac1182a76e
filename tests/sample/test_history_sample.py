"""`twin sample --history N`: a generated past, written through the real history triggers."""

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from sqlalchemy import text

from tests.conftest import SEED, SPEC, Database, Server, run_twin
from twin.registry import all_layers
from twin.sample.history import KINDS, Create, Nudge, Transition
from twin.sample.spec import load_spec
from twin.users import ROLES

HISTORY = 2000
LOADED = "sample twin loaded%"  # the reason of the sample's own insert records
# What a history is compared by: every change's feature, version and new values, in order.
DIGEST = ("SELECT md5(string_agg(concat_ws('|', feature_id, version_after, changed::text, "
          "new_values::text), E'\\n' ORDER BY feature_id, id)) FROM twin.changes")
# ... and when shares of it were written at once: what each generated change did, by whom,
# whatever the ids of added features and the order the shares' transactions committed in.
CONTENT = ("SELECT md5(string_agg(c, E'\\n' ORDER BY c)) FROM (SELECT concat_ws('|', actor, "
           "reason, version_after, changed::text, new_values::text) AS c FROM twin.changes "
           "WHERE reason NOT LIKE 'sample twin loaded%') generated")


def _as_owner(db: Database) -> dict[str, str]:
    """The CLI connected as the schema owner: only the owner may stamp changes in the past."""
    return {**db.env(), "TWIN_DATABASE_URL": db.admin_url}


class History(NamedTuple):
    db: Database
    printed: str  # what the command printed
    jobs: int


@pytest.fixture(scope="module", params=[1, 3], ids=["one job", "three jobs"])
def history(request: pytest.FixtureRequest, server: Server,
            empty_template: str) -> Iterator[History]:
    """A sample loaded by `twin sample --history`, written by one connection or three."""
    db = server.create(f"twin_test_{uuid.uuid4().hex[:10]}", template=empty_template)
    done = run_twin("sample", "--seed", str(SEED), "--cases", "0", "--orders", "0", "--history",
                    str(HISTORY), "--jobs", str(request.param), env=_as_owner(db))
    assert done.returncode == 0, done.stderr
    yield History(db, done.stdout, request.param)
    server.drop(db)




def test_history_appends_exactly_n_changes(history: History, sample_db: Database) -> None:
    db, printed, _ = history
    loaded, generated = db.rows("SELECT count(*) FILTER (WHERE reason LIKE :r), "
                                  "count(*) FILTER (WHERE reason NOT LIKE :r) FROM twin.changes",
                              r=LOADED)[0]
    assert loaded == sample_db.scalar("SELECT count(*) FROM twin.changes")
    assert generated == HISTORY
    assert re.search(rf"wrote {HISTORY} changes .* changes/s", printed), printed


def test_history_lies_in_the_spec_period_mostly_in_working_hours(history: History) -> None:
    db, _, jobs = history
    period = load_spec(SPEC).history
    assert period is not None
    start = datetime.combine(period.start, datetime.min.time(), period.timezone)
    end = datetime.combine(period.end + timedelta(days=1), datetime.min.time(), period.timezone)
    # the sample is stamped at the start of the period, so the history comes after it
    assert {t for (t,) in db.rows("SELECT DISTINCT server_time FROM twin.changes "
                                    "WHERE reason LIKE :r", r=LOADED)} == {start}
    times = db.rows("SELECT server_time, client_time, feature_id FROM twin.changes "
                      "WHERE reason NOT LIKE :r ORDER BY id", r=LOADED)
    assert all(start < server < end for server, _, _ in times)
    # one connection writes in time order; shares interleave, each feature's edits in order
    streams: dict[int, list[datetime]] = {}
    for server, _, feature in times:
        streams.setdefault(feature if jobs > 1 else 0, []).append(server)
    assert all(stream == sorted(stream) for stream in streams.values())
    first, last = period.working_hours
    working = [first <= server.astimezone(period.timezone).hour < last
               for server, _, _ in times]
    assert sum(working) > 0.9 * len(times)
    lags = [(server - client).total_seconds() for server, client, _ in times]
    assert all(0 < lag <= 1800 for lag in lags)
    assert any(lag > 60 for lag in lags)  # some tablets were offline for minutes


def test_workers_edit_only_in_their_own_grids(history: History) -> None:
    db = history.db
    changes = db.rows("""
        SELECT c.role, c.actor, c.device, c.grid_code, c.operation, c.layer, c.edit_id,
               EXISTS (SELECT FROM twin.users u JOIN twin.user_grids g ON g.user_id = u.id
                        WHERE u.name = c.actor AND g.grid_code = c.grid_code) AS own_grid
          FROM twin.changes c WHERE c.reason NOT LIKE :r""", r=LOADED)
    workers = [c for c in changes if c.role == "worker"]
    assert all(c.own_grid and c.device == f"tablet-{c.grid_code}" and c.edit_id
               for c in workers)
    assert len(workers) > 0.7 * len(changes)
    assert {c.role for c in changes} == {"worker", "planner", "commander", "admin"}
    assert {c.layer for c in changes} >= {"waste_points", "charging_points", "fire_passages",
                                          "buildings", "streets"}
    assert {c.operation for c in changes} == {"insert", "update", "delete"}
    assert not {"micro_grids", "residential_areas"} & {c.layer for c in changes}


def test_every_feature_is_its_newest_version_which_alone_is_open(history: History) -> None:
    db = history.db
    assert db.scalar("""
        SELECT count(*) FROM twin.features f
          LEFT JOIN twin.feature_versions v ON v.feature_id = f.id AND upper_inf(v.valid)
         WHERE v.feature_id IS NULL
            OR (f.version, f.props, f.tags, ST_AsEWKB(f.geom), f.grid_code, f.area_code)
               IS DISTINCT FROM
               (v.version, v.props, v.tags, ST_AsEWKB(v.geom), v.grid_code, v.area_code)
            OR v.version <> (SELECT max(version) FROM twin.feature_versions w
                              WHERE w.feature_id = f.id)""") == 0
    open_versions, features = db.rows("""
        SELECT (SELECT count(*) FROM twin.feature_versions WHERE upper_inf(valid)),
               (SELECT count(*) FROM twin.features)""")[0]
    assert open_versions == features
    # versions follow each other without gaps or empty intervals, deleted ones included
    assert db.scalar("SELECT count(*) FROM twin.feature_versions WHERE isempty(valid)") == 0
    assert db.scalar("SELECT count(*) FROM (SELECT feature_id FROM twin.feature_versions "
                    "GROUP BY 1 HAVING count(*) <> max(version)) gaps") == 0


def test_points_are_added_removed_and_brought_back_with_their_own_id(
        history: History) -> None:
    db = history.db
    assert db.scalar("SELECT count(*) FROM twin.changes WHERE operation = 'insert' "
                    "AND version_after = 1 AND reason NOT LIKE :r", r=LOADED) > 0
    restored = db.rows("SELECT feature_id, version_after FROM twin.changes "
                         "WHERE operation = 'insert' AND version_after > 1")
    assert restored
    for feature_id, version in restored:
        before = db.scalar("SELECT version_before FROM twin.changes WHERE feature_id = :f "
                          "AND operation = 'delete' AND version_before = :v",
                      f=feature_id, v=version - 1)
        assert before == version - 1


def test_history_values_fit_the_layers(history: History) -> None:
    db = history.db
    versions = db.rows("""
        SELECT v.layer, v.props, v.tags FROM twin.feature_versions v
          JOIN twin.changes c ON c.id = v.change_id WHERE c.reason NOT LIKE :r""", r=LOADED)
    assert len(versions) > HISTORY * 0.9
    layers = all_layers()
    for layer, props, tags in versions:
        layers[layer].attributes.model_validate(props)
        assert layers[layer].tags.problems(tags) == []


def test_the_same_seed_gives_the_same_history(history: History, sample_db: Database) -> None:
    db, _, jobs = history
    loaded_at = sample_db.scalar("SELECT max(server_time) FROM twin.changes")
    # the same sample, loaded earlier today: the history is appended to it
    done = run_twin("sample", "--seed", str(SEED), "--if-empty", "--cases", "0", "--orders", "0",
                    "--history", str(HISTORY), "--jobs", str(jobs), env=_as_owner(sample_db))
    assert done.returncode == 0, done.stderr
    assert "sample not loaded" in done.stdout
    digest = DIGEST if jobs == 1 else CONTENT
    assert sample_db.scalar(digest) == db.scalar(digest)
    # time only moves forward: this twin's history begins the day after its sample was loaded
    assert sample_db.scalar("SELECT min(server_time) FROM twin.changes WHERE reason NOT LIKE :r",
                r=LOADED) > loaded_at


def test_history_needs_the_schema_owner(db: Database) -> None:
    done = run_twin("sample", "--history", "10", env=db.env())  # as the app role
    assert done.returncode == 1
    assert "owner of schema twin" in done.stderr
    assert db.scalar("SELECT count(*) FROM twin.features") == 0  # refused before loading


def test_the_app_role_cannot_move_the_clock(sample_db: Database) -> None:
    with sample_db.app.begin() as conn:
        conn.execute(text("SELECT set_config('twin.clock', :t, true)"),
                     {"t": "2026-01-01T08:00:00+08:00"})
        fid = conn.execute(text(
            "UPDATE twin.features SET props = props || jsonb_build_object('bins', "
            "(props ->> 'bins')::int % 50 + 1) WHERE id = (SELECT min(id) FROM twin.features "
            "WHERE layer = 'waste_points') RETURNING id")).scalar_one()
        now = conn.execute(text("SELECT now()")).scalar_one()
    assert now > datetime(2026, 1, 2, tzinfo=UTC)
    stamps = sample_db.rows("SELECT c.server_time, f.valid_from FROM twin.changes c "
                              "JOIN twin.features f ON f.id = c.feature_id "
                              "WHERE c.feature_id = :f AND c.operation = 'update'", f=fid)
    assert stamps == [(now, now)]


def test_every_kind_of_edit_speaks_its_layers_vocabulary() -> None:
    layers = all_layers()
    for kind in KINDS:
        layer = layers[kind.layer]
        assert set(kind.roles) <= set(ROLES), kind
        blank = layer.attributes.model_construct()
        values = {**kind.when, **(kind.to if isinstance(kind, Transition) else {})}
        for key, value in values.items():
            layer.attributes.__pydantic_validator__.validate_assignment(blank, key, value)
        tags = [*kind.has, *kind.lacks]
        if isinstance(kind, Transition):
            tags += [*kind.add, *kind.remove]
        if isinstance(kind, Create):
            layer.attributes.model_validate(kind.props)
            tags += kind.tags
        if isinstance(kind, Nudge):
            assert kind.attribute in layer.attributes.model_fields, kind
        whole = [t for t in tags if not t.endswith("=")]
        assert layer.tags.problems(whole) == [], kind
        assert {t[:-1] for t in tags if t.endswith("=")} <= set(layer.tags.keys), kind
