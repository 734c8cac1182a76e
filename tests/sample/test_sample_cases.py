"""`twin sample --cases N`: a half year of cases, each run through the loop by the real
triggers, with honest rates (not 100 %)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import SEED, Database, Server, run_twin

N = 300
SHANGHAI = ZoneInfo("Asia/Shanghai")
BY_STATE = "SELECT state, category, count(*) FROM twin.cases GROUP BY 1, 2 ORDER BY 1, 2"


class Run(NamedTuple):
    db: Database
    printed: str


def _as_owner(db: Database) -> dict[str, str]:
    """The CLI connected as the schema owner: only the owner may stamp the past."""
    return {**db.env(), "TWIN_DATABASE_URL": db.admin_url}


def _cases(db: Database, *args: str) -> str:
    done = run_twin("sample", "--if-empty", "--seed", str(SEED), "--cases", str(N), "--orders", "0",
                    *args,
                    env=_as_owner(db))
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def run(server: Server, sample_template: str) -> Iterator[Run]:
    """The sample twin with N cases filed, written by two connections."""
    db = server.create(f"twin_test_{uuid.uuid4().hex[:10]}", template=sample_template)
    try:
        yield Run(db, _cases(db, "--jobs", "2"))
    finally:
        server.drop(db)


def test_n_cases_are_filed_and_reports_not_filed_come_on_top(run: Run) -> None:
    db = run.db
    filed, reported = db.one("SELECT count(*) FILTER (WHERE filed_at IS NOT NULL), count(*) "
                             "FROM twin.cases")
    assert filed == N
    assert N * 1.03 < reported < N * 1.09
    assert f"wrote {N} cases filed" in run.printed
    unfiled = dict(db.rows("SELECT state, count(*) FROM twin.cases WHERE filed_at IS NULL "
                           "GROUP BY 1"))
    assert set(unfiled) <= {"void", "not_filed", "reported"} and unfiled["void"] > 0
    # a void duplicate names the case it repeats; the trigger flagged it as a likely one
    assert db.scalar("SELECT count(*) FROM twin.cases WHERE state = 'void' AND (duplicate_of "
                     "IS NULL OR likely_duplicate_of IS NULL)") == 0


def test_every_case_took_a_legal_path_in_the_period(run: Run) -> None:
    db = run.db
    # events numbered 1.. per case, in time order, each move one the lifecycle allows
    assert db.scalar("""
        SELECT count(*) FROM (SELECT case_id, version, server_time, from_state, to_state,
                                     action, lag(to_state) OVER w AS before,
                                     lag(server_time) OVER w AS earlier,
                                     row_number() OVER w AS n
                                FROM twin.case_events WINDOW w AS (PARTITION BY case_id
                                                                   ORDER BY version)) e
         WHERE e.version <> e.n OR e.server_time <= e.earlier
            OR (e.action = 'transition' AND (e.from_state IS DISTINCT FROM e.before
                OR NOT EXISTS (SELECT FROM twin.case_transitions t
                               WHERE t.from_state = e.from_state AND t.to_state = e.to_state)))
            OR (e.action = 'report') <> (e.n = 1)""") == 0
    first, last = db.one("SELECT min(server_time), max(server_time) FROM twin.case_events")
    assert datetime(2026, 1, 1, tzinfo=SHANGHAI) <= first
    assert last < datetime(2026, 7, 1, tzinfo=SHANGHAI)
    # verified by someone else than the handler, near the case, with a photo that exists
    assert db.scalar("""
        SELECT count(*) FROM twin.case_events e JOIN twin.cases c ON c.id = e.case_id
         WHERE e.from_state = 'handled'
           AND (e.actor = (SELECT p.snapshot ->> 'handled_by' FROM twin.case_events p
                            WHERE p.case_id = e.case_id AND p.version = e.version - 1)
                OR cardinality(e.photos) = 0
                OR ST_Distance(e.position::geography, c.geom::geography) > 50
                OR NOT EXISTS (SELECT FROM twin.photos p WHERE p.sha256 = e.photos[1]))""") == 0
    # department cases are handled by that department's users
    assert db.scalar("""
        SELECT count(*) FROM twin.case_events e JOIN twin.cases c ON c.id = e.case_id
         WHERE e.to_state = 'handled' AND e.role = 'department'
           AND e.department IS DISTINCT FROM c.department""") == 0
    # parked cases carry a reason and an approver
    assert db.scalar("SELECT count(*) FROM twin.case_events WHERE to_state = 'parked' AND "
                     "(reason IS NULL OR approver IS NULL)") == 0


def test_most_cases_at_the_twins_own_features(run: Run) -> None:
    db = run.db
    linked, total = db.one("SELECT count(feature_id), count(*) FROM twin.cases c "
                           "JOIN twin.case_categories k ON k.code = c.category "
                           "WHERE k.layer IS NOT NULL")
    assert linked > 0.7 * total
    assert db.scalar("""
        SELECT count(*) FROM twin.cases c JOIN twin.features f ON f.id = c.feature_id
         WHERE f.layer <> c.feature_layer OR ST_Distance(f.geom::geography,
                                                          c.geom::geography) > 1""") == 0
    sources = dict(db.rows("SELECT source, count(*) FROM twin.cases GROUP BY 1"))
    assert sources["worker"] + sources["patrol"] > 0.6 * sum(sources.values())
    assert db.scalar("SELECT count(*) FROM twin.cases WHERE grid_code IS NULL") == 0


def test_the_rates_are_honest(run: Run) -> None:
    db = run.db
    due, closed, on_time, late, reworked = db.one("""
        SELECT count(*) FILTER (WHERE case_due < '2026-07-01+08'),
               count(*) FILTER (WHERE case_due < '2026-07-01+08' AND state = 'closed'),
               count(*) FILTER (WHERE case_due < '2026-07-01+08' AND state = 'closed'
                                AND closed_at <= case_due),
               count(*) FILTER (WHERE closed_at > case_due AND state = 'closed'),
               count(*) FILTER (WHERE rework > 0)
          FROM twin.cases""")
    assert 0.85 * due < on_time < due  # some late: the on-time rate is below 100 %
    assert closed <= due and late > 0 and reworked > 0
    # the last weeks end with open cases
    assert db.scalar("SELECT count(*) FROM twin.cases WHERE state IN "
                     "('reported', 'filed', 'dispatched', 'handled')") > 0


def test_the_same_seed_gives_the_same_cases(run: Run, server: Server,
                                            sample_template: str) -> None:
    again = server.create(f"twin_test_{uuid.uuid4().hex[:10]}", template=sample_template)
    try:
        _cases(again, "--jobs", "1")
        assert again.rows(BY_STATE) == run.db.rows(BY_STATE)
    finally:
        server.drop(again)


def test_cases_need_the_schema_owner(db: Database) -> None:
    done = run_twin("sample", "--cases", "10", env=db.env())  # as the app role
    assert done.returncode == 1 and "owner of schema twin" in done.stderr
    assert db.scalar("SELECT count(*) FROM twin.features") == 0  # refused before loading


def test_the_planning_clock_counts_working_time_as_the_database_does(
        sample_db: Database) -> None:
    """The generator plans its steps with a Python copy of the working calendar; the
    database's twin.add_work and twin.work_between stay the rule it is checked against."""
    from twin.sample.cases import WorkClock

    periods = [tuple(r) for r in sample_db.rows(
        "SELECT starts, ends FROM twin.work_periods ORDER BY starts")]
    days = dict(sample_db.rows("SELECT day, working FROM twin.calendar_days"))
    clock = WorkClock("Asia/Shanghai", periods, days)  # type: ignore[arg-type]
    zone = ZoneInfo("Asia/Shanghai")
    starts = [datetime(2026, 2, 13, 10, 0, tzinfo=zone), datetime(2026, 9, 30, 16, 0,
                                                                    tzinfo=zone),
              datetime(2026, 3, 6, 18, 0, tzinfo=zone), datetime(2026, 4, 20, 12, 15,
                                                                   tzinfo=zone)]
    for start in starts:
        for limit in ("0.5h", "4h", "7h", "1d", "2d", "20d"):
            expected = sample_db.scalar("SELECT twin.add_work(CAST(:t AS timestamptz), :l)",
                                        t=start.isoformat(), l=limit)
            assert clock.add(start, limit) == expected, (start, limit)
        later = clock.add(start, "20d")
        hours = sample_db.scalar("SELECT extract(epoch FROM twin.work_between("
                                 "CAST(:a AS timestamptz), CAST(:b AS timestamptz))) / 3600",
                                 a=start.isoformat(), b=later.isoformat())
        assert clock.hours_between(start, later) == pytest.approx(float(hours))
