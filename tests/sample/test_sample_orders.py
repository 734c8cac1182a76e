"""`twin sample --orders N`: a half year of 12345 hotline orders, each received through the
import and run through the hotline's steps by the real triggers, with honest rates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import SEED, SPEC, Database, Server, run_twin
from twin.hotline.kpis import kpis
from twin.sample.orders import OrderPlan, orders_window, placed_right, plan_orders
from twin.sample.spec import load_spec

N = 120
SHANGHAI = ZoneInfo("Asia/Shanghai")
START, END = datetime(2026, 1, 1, tzinfo=SHANGHAI), datetime(2026, 7, 1, tzinfo=SHANGHAI)
# What each order became, by the city system's number (ids may differ between runs).
BY_NUMBER = """
    SELECT o.order_number, o.received_at, o.state, o.kind, o.duty, o.channel, o.category,
           o.address, o.placed_by, o.placed_feature, o.grid_code, o.department, o.verdict,
           o.reopened, r.order_number AS repeat_of, o.case_id IS NOT NULL AS has_case,
           (SELECT array_agg(e.to_state || '@' || e.server_time ORDER BY e.version)
              FROM twin.order_events e WHERE e.order_id = o.id) AS events
      FROM twin.orders o LEFT JOIN twin.orders r ON r.id = o.repeat_of
     ORDER BY o.order_number"""


class Run(NamedTuple):
    db: Database
    printed: str
    plan: OrderPlan


def _orders(db: Database, *args: str) -> str:
    """The sample's orders (and no generated cases) in a loaded twin, as the schema owner:
    only the owner may stamp the past."""
    done = run_twin("sample", "--if-empty", "--seed", str(SEED), "--cases", "0", "--orders",
                    str(N), *args, env={**db.env(), "TWIN_DATABASE_URL": db.admin_url})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def run(server: Server, sample_template: str) -> Iterator[Run]:
    """The sample twin with N orders, written by two connections; and the plan they came
    from (drawn again from the seed, over the period they were written in)."""
    db = server.create(f"twin_test_{uuid.uuid4().hex[:10]}", template=sample_template)
    try:
        window = orders_window(db.admin, load_spec(SPEC))
        printed = _orders(db, "--jobs", "2")
        with db.admin.connect() as conn:
            plan = plan_orders(conn, window, N, SEED, "南码头路街道")
        yield Run(db, printed, plan)
    finally:
        server.drop(db)


def test_n_orders_are_received_through_the_import(run: Run) -> None:
    db = run.db
    assert db.scalar("SELECT count(*) FROM twin.orders") == N
    assert f"received {N} hotline orders" in run.printed
    # in the period, numbered as the city system does, each caller written through
    # twin.set_caller (logged) and kept apart from the order
    first, last = db.one("SELECT min(received_at), max(received_at) FROM twin.orders")
    assert first >= START and last < END
    assert db.scalar("SELECT count(*) FROM twin.orders WHERE order_number !~ '^SH2026[0-9]{8}$'"
                     ) == 0
    assert db.scalar("SELECT count(*) FROM twin.order_callers WHERE name ~ '(先生|女士)$' "
                     "AND phone ~ '^139[0-9]{8}$'") == N
    assert db.scalar("SELECT count(DISTINCT order_id) FROM twin.contact_log WHERE action = "
                     "'write' AND actor = 'sample' AND role = 'admin'") == N
    # the plan drawn again from the seed is what was written
    assert {c.order.order_number for c in run.plan.calls} == {
        number for (number,) in db.rows("SELECT order_number FROM twin.orders")}
    # a realistic mix: help and complaints most, by the first handler mostly, by phone mostly
    kinds = dict(db.rows("SELECT kind, count(*) FROM twin.orders GROUP BY 1"))
    assert kinds["help"] + kinds["complaint"] > 0.6 * N
    assert db.scalar("SELECT count(*) FROM twin.orders WHERE duty = 'first'") > 0.6 * N
    assert db.scalar("SELECT count(*) FROM twin.orders WHERE channel = 'phone'") > 0.6 * N
    assert db.scalar("SELECT count(*) FROM twin.orders WHERE kind IN ('consultation', "
                     "'suggestion') AND category IS NOT NULL") == 0
    # callers call in the day: most orders in working hours
    assert db.scalar("SELECT count(*) FROM twin.orders WHERE extract(hour FROM received_at "
                     "AT TIME ZONE 'Asia/Shanghai') BETWEEN 8 AND 17") > 0.6 * N


def test_callers_words_land_on_the_buildings_they_name(run: Run) -> None:
    with run.db.admin.connect() as conn:
        right, kept = placed_right(conn, run.plan)
    assert kept > 0.8 * N
    assert right / kept >= 0.95, (right, kept)
    # nothing is placed on a building the caller did not name
    meant = {c.order.order_number: c.building for c in run.plan.calls}
    wrong = [number for number, feature in run.db.rows(
        "SELECT order_number, placed_feature FROM twin.orders WHERE placed_by = 'building'")
        if feature != meant[number]]
    assert wrong == []


def test_the_queue_waits_for_a_person(run: Run) -> None:
    db = run.db
    queued = db.rows("SELECT state, accepted_at, case_id FROM twin.orders WHERE geom IS NULL")
    assert 1 <= len(queued) <= 0.05 * N
    assert {(state, accepted, case) for state, accepted, case in queued} == {
        ("received", None, None)}
    assert db.scalar("SELECT count(*) FROM twin.order_events e JOIN twin.orders o "
                     "ON o.id = e.order_id WHERE o.geom IS NULL AND e.action <> 'receive'") == 0


def test_every_order_took_a_legal_path(run: Run) -> None:
    db = run.db
    assert db.scalar("""
        SELECT count(*) FROM (SELECT order_id, version, server_time, from_state, to_state,
                                     action, lag(to_state) OVER w AS before,
                                     lag(server_time) OVER w AS earlier,
                                     row_number() OVER w AS n
                                FROM twin.order_events WINDOW w AS (PARTITION BY order_id
                                                                    ORDER BY version)) e
         WHERE e.version <> e.n OR e.server_time <= e.earlier
            OR (e.action = 'transition' AND (e.from_state IS DISTINCT FROM e.before
                OR NOT EXISTS (SELECT FROM twin.order_transitions t
                               WHERE t.from_state = e.from_state AND t.to_state = e.to_state)))
            OR (e.action = 'receive') <> (e.n = 1)""") == 0
    # every step planned was taken, each one event
    assert db.scalar("SELECT count(*) FROM twin.order_events") == sum(
        s.kind != "case" for c in run.plan.calls for s in c.steps)
    first, last = db.one("SELECT min(server_time), max(server_time) FROM twin.order_events")
    assert first >= START and last < END
    # accepted by the dispatcher; sent back with a reason and an approver
    assert db.scalar("SELECT count(*) FROM twin.order_events WHERE to_state = 'accepted' "
                     "AND (actor, role) <> ('dispatcher', 'dispatcher')") == 0
    assert db.scalar("SELECT count(*) FROM twin.order_events WHERE to_state = 'returned' "
                     "AND (reason IS NULL OR approver IS NULL)") == 0
    # the street work was done first: each reply after the order's case was handled, by the
    # case's assignee or its department's user; the cases closed by someone else
    assert db.scalar("""
        SELECT count(*) FROM twin.order_events e JOIN twin.orders o ON o.id = e.order_id
          JOIN twin.case_events h ON h.case_id = o.case_id AND h.to_state = 'handled'
         WHERE e.to_state = 'replied' AND h.server_time > e.server_time""") == 0
    assert db.scalar("SELECT count(*) FROM twin.orders WHERE state IN ('replied', 'closed') "
                     "AND category IS NOT NULL AND case_id IS NULL") == 0
    assert db.scalar("""
        SELECT count(*) FROM twin.case_events e JOIN twin.cases c ON c.id = e.case_id
         WHERE e.to_state = 'handled' AND (e.role = 'department' AND e.department
               IS DISTINCT FROM c.department OR e.role = 'worker' AND e.actor <> c.assignee)
        """) == 0
    assert db.scalar("SELECT count(*) FROM twin.cases WHERE source = 'hotline' AND state = "
                     "'closed'") > 0.5 * db.scalar("SELECT count(*) FROM twin.cases")


def test_repeat_calls_are_merged(run: Run) -> None:
    db = run.db
    merged = db.rows("""
        SELECT o.kind = r.kind AND o.category = r.category
               AND ST_DWithin(o.geom::geography, r.geom::geography, 50)
               AND o.received_at - r.received_at BETWEEN interval '0' AND interval '30 days'
          FROM twin.orders o JOIN twin.orders r ON r.id = o.repeat_of""")
    assert merged and all(ok for (ok,) in merged)
    # the plan's repeat calls name the building of the call they repeat
    numbers = [c.order.order_number for c in run.plan.calls if c.repeat]
    assert numbers and db.scalar("SELECT count(*) FROM twin.orders WHERE repeat_of IS NOT NULL "
                                 "AND order_number = ANY(:n)", n=numbers) == len(numbers)


def test_the_rates_are_plausible(run: Run) -> None:
    with run.db.app.connect() as conn:
        total = kpis(conn, START, END, None)["total"]
    assert total["received"] == N
    assert total["on_time_rate"] >= 0.95
    assert total["satisfaction_rate"] > 0.85
    assert 0 < total["repeat_rate"] < 0.2
    assert total["accepted_in_time_rate"] >= 0.9


def test_the_same_seed_gives_the_same_orders(run: Run, server: Server,
                                             sample_template: str) -> None:
    again = server.create(f"twin_test_{uuid.uuid4().hex[:10]}", template=sample_template)
    try:
        _orders(again, "--jobs", "1")
        assert again.rows(BY_NUMBER) == run.db.rows(BY_NUMBER)
    finally:
        server.drop(again)


def test_orders_need_the_schema_owner(db: Database) -> None:
    done = run_twin("sample", "--cases", "0", "--orders", "10", env=db.env())  # the app role
    assert done.returncode == 1 and "owner of schema twin" in done.stderr
    assert db.scalar("SELECT count(*) FROM twin.features") == 0  # refused before loading
