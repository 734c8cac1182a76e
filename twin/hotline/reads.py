"""Orders as GeoJSON, built by PostgreSQL: one order with its clocks, the steps it may take
and its events; lists filtered (state, the queue of orders not placed, warnings, what waits
for first contact, a figure of the rates) and paged. The caller is always masked here
(twin.callers_masked): the name and phone come only from twin.hotline.loop.caller()."""

# SQL here is composed of fixed fragments; every value is bound.
# ruff: noqa: S608
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from twin.errors import InvalidInput, NotFound, Problem
from twin.hotline.loop import visible_sql
from twin.users import User

OPEN = ("received", "accepted", "contacted", "replied", "reopened")
# The queue: orders with an address or street work that no one has placed yet (a question
# with neither needs no place; the database refuses to accept the others unplaced).
QUEUED = "(o.geom IS NULL AND (o.category IS NOT NULL OR o.address <> ''))"
STATES = (*OPEN, "closed", "returned")
MAX_LIMIT = 1000

# What runs late now: the step an order waits for, past its deadline.
LATE = """CASE o.state
    WHEN 'received' THEN o.accept_due < now()
    WHEN 'accepted' THEN o.contact_due < now() OR o.handle_due < now()
    WHEN 'contacted' THEN o.handle_due < now()
    WHEN 'reopened' THEN o.rehandle_due < now()
    WHEN 'replied' THEN o.visit_due < now()
    ELSE false END"""

# One order as the API gives it, from a row o of twin.orders, its kind k, duty d and masked
# caller m.
FEATURE_SQL = f"""
json_build_object('type', 'Feature', 'id', o.id,
  'geometry', ST_AsGeoJSON(o.geom, 7)::json,
  'properties', json_build_object(
    'order_number', o.order_number, 'state', o.state, 'received_at', o.received_at,
    'channel', o.channel, 'kind', o.kind, 'kind_zh', k.name_zh, 'kind_en', k.name_en,
    'duty', o.duty, 'duty_zh', d.name_zh, 'duty_en', d.name_en, 'category', o.category,
    'words', o.words, 'address', o.address, 'placed_by', o.placed_by,
    'placed_feature', o.placed_feature, 'queued', {QUEUED},
    'micro_grid', o.grid_code, 'residential_area', o.area_code, 'department', o.department,
    'case', o.case_id, 'repeat_of', o.repeat_of,
    'accepted_at', o.accepted_at, 'contacted_at', o.contacted_at,
    'replied_at', o.replied_at, 'closed_at', o.closed_at,
    'due', json_build_object('accept', o.accept_due, 'contact', o.contact_due,
                             'handle', o.handle_due, 'rehandle', o.rehandle_due,
                             'visit', o.visit_due),
    'late', {LATE},
    'verdict', o.verdict, 'warning', o.warning, 'reopened', o.reopened,
    'extended', o.extended, 'version', o.version, 'changed_at', o.changed_at,
    'caller', CASE WHEN m.order_id IS NOT NULL THEN json_build_object(
        'name', m.name, 'phone', m.phone, 'erased', m.erased_at IS NOT NULL) END))"""

FROM = """twin.orders o JOIN twin.order_kinds k ON k.code = o.kind
  JOIN twin.order_duties d ON d.code = o.duty
  LEFT JOIN twin.callers_masked m ON m.order_id = o.id"""


def order_feature(conn: Connection, order_id: int, user: User | None = None) -> dict[str, Any]:
    """One order as a GeoJSON Feature, with the steps it may take next (404 if not visible)."""
    where, params = visible_sql(user) if user else ("true", {})
    row = conn.execute(text(f"""
        SELECT {FEATURE_SQL} AS f,
               (SELECT coalesce(json_agg(json_build_object('to', t.to_state, 'name_zh',
                                t.name_zh, 'name_en', t.name_en, 'roles', t.roles,
                                'needs', t.needs) ORDER BY t.to_state), '[]')
                  FROM twin.order_transitions t WHERE t.from_state = o.state) AS allowed
          FROM {FROM} WHERE o.id = :id AND {where}"""), params | {"id": order_id}).first()
    if row is None:
        raise NotFound(f"no order {order_id}", [Problem("id", order_id, "no such order (or not "
                                                        "yours to see)", "无此工单")])
    feature: dict[str, Any] = row.f
    feature["properties"]["allowed"] = row.allowed
    return feature


def order_events(conn: Connection, order_id: int, user: User) -> list[dict[str, Any]]:
    """Every step of an order, oldest first (never the caller's contact: a change of it shows
    as "caller": "changed")."""
    order_feature(conn, order_id, user)  # 404 unless visible
    return [dict(r) for r in conn.execute(text(
        "SELECT version, action, from_state, to_state, server_time, actor, role, reason, "
        "approver, verdict, changed FROM twin.order_events WHERE order_id = :id "
        "ORDER BY version"), {"id": order_id}).mappings()]


@dataclass(frozen=True)
class OrderQuery:
    """A list of orders: filters, and a page."""

    state: tuple[str, ...] = ()
    queued: bool | None = None  # True: the queue of orders no one has placed yet
    warning: bool | None = None
    waiting: str | None = None  # accept | contact | reply | visit: the step it waits for
    late: bool | None = None
    kind: str | None = None
    duty: str | None = None
    grid: str | None = None
    area: str | None = None
    department: str | None = None
    case: int | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    figure: str | None = None  # a figure of the rates: with start and end, the orders it counts
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    offset: int = 0


WAITING = {"accept": "o.state = 'received'", "contact": "o.state = 'accepted'",
           "reply": "o.state IN ('accepted', 'contacted', 'reopened')",
           "visit": "o.state = 'replied'"}


def _where(user: User, q: OrderQuery) -> tuple[str, dict[str, Any]]:
    from twin.hotline.kpis import figure_where  # the rates' figures are declared there

    where, params = visible_sql(user)
    parts = [where]
    problems = [Problem("state", s, f"one of {', '.join(STATES)}", "状态无效")
                for s in q.state if s not in STATES]
    if q.waiting is not None and q.waiting not in WAITING:
        problems.append(Problem("waiting", q.waiting, f"one of {', '.join(WAITING)}",
                                "无效"))
    if not 1 <= q.limit <= MAX_LIMIT:
        problems.append(Problem("limit", q.limit, f"1 to {MAX_LIMIT}", "超出范围"))
    if q.offset < 0:
        problems.append(Problem("offset", q.offset, "0 or more", "不能为负"))
    if q.figure is not None:
        if q.start is None or q.end is None:
            problems.append(Problem("figure", q.figure, "needs from and to", "须给出起止时间"))
        else:
            try:
                fig, fig_params = figure_where(q.figure)
            except InvalidInput as exc:
                problems.extend(exc.problems)
            else:
                parts.append(fig)
                params |= fig_params | {"start": q.start, "end": q.end}
    if problems:
        raise InvalidInput(f"bad order query: {problems[0].reason}", problems)
    if q.state:
        parts.append("o.state = ANY(:states)")
        params["states"] = list(q.state)
    if q.queued is not None:
        parts.append(QUEUED if q.queued else f"NOT {QUEUED}")
    if q.warning is not None:
        parts.append("o.warning" if q.warning else "NOT o.warning")
    if q.waiting is not None:
        parts.append(WAITING[q.waiting])
    if q.late is not None:
        parts.append(f"({LATE})" if q.late else f"NOT ({LATE})")
    for column, value in (("kind", q.kind), ("duty", q.duty), ("grid_code", q.grid),
                          ("area_code", q.area), ("department", q.department),
                          ("case_id", q.case)):
        if value is not None:
            parts.append(f"o.{column} = :{column}")
            params[column] = value
    if q.received_from is not None:
        parts.append("o.received_at >= :received_from")
        params["received_from"] = q.received_from
    if q.received_to is not None:
        parts.append("o.received_at < :received_to")
        params["received_to"] = q.received_to
    return " AND ".join(parts), params


def list_orders(conn: Connection, user: User, q: OrderQuery) -> dict[str, Any]:
    """A FeatureCollection of orders, newest first (those not placed have no geometry)."""
    where, params = _where(user, q)
    row = conn.execute(text(f"""
        WITH hit AS (SELECT o.id FROM twin.orders o WHERE {where})
        SELECT (SELECT count(*) FROM hit) AS matched,
               (SELECT coalesce(json_agg(f ORDER BY rt DESC, id DESC), '[]') FROM (
                   SELECT {FEATURE_SQL} AS f, o.received_at AS rt, o.id FROM {FROM}
                    WHERE o.id IN (SELECT id FROM hit)
                    ORDER BY o.received_at DESC, o.id DESC LIMIT :limit OFFSET :offset) p)
               AS features"""), params | {"limit": q.limit, "offset": q.offset}).one()
    return {"type": "FeatureCollection", "numberMatched": row.matched,
            "numberReturned": len(row.features), "features": row.features}


CSV_COLUMNS = ("id", "order_number", "state", "received_at", "channel", "kind", "duty",
               "category", "address", "placed_by", "micro_grid", "residential_area",
               "department", "case", "repeat_of", "accepted_at", "contacted_at", "replied_at",
               "closed_at", "accept_due", "contact_due", "handle_due", "verdict", "warning",
               "reopened", "caller_name", "caller_phone")


def csv_rows(conn: Connection, user: User, q: OrderQuery) -> list[list[Any]]:
    """The orders of a query as rows of CSV_COLUMNS (the caller masked, as everywhere)."""
    out = []
    for f in list_orders(conn, user, q)["features"]:
        p = f["properties"]
        caller = p["caller"] or {}
        out.append([f["id"], p["order_number"], p["state"], p["received_at"], p["channel"],
                    p["kind"], p["duty"], p["category"], p["address"], p["placed_by"],
                    p["micro_grid"], p["residential_area"], p["department"], p["case"],
                    p["repeat_of"], p["accepted_at"], p["contacted_at"], p["replied_at"],
                    p["closed_at"], p["due"]["accept"], p["due"]["contact"], p["due"]["handle"],
                    p["verdict"], p["warning"], p["reopened"], caller.get("name"),
                    caller.get("phone")])
    return out


def read_contact_log(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Who read, wrote or erased callers' contacts, newest first (what, never the values)."""
    return [dict(r) for r in conn.execute(text(
        "SELECT id, server_time, actor, role, action, order_id, detail FROM twin.contact_log "
        "ORDER BY id DESC LIMIT :n"), {"n": limit}).mappings()]
