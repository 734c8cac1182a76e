"""Cases as GeoJSON, built by PostgreSQL: one case with its stages and events, and lists
(cursor-paged, filtered, as of any moment). A worker sees the cases of their own grids and
those sent to them, a department user its department's, everyone else all of them."""

# SQL here is composed of fixed fragments; every value is bound.
# ruff: noqa: S608
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from twin.errors import InvalidInput, NotFound, Problem
from twin.users import User

OPEN = ("reported", "filed", "dispatched", "handled")
STATES = (*OPEN, "not_filed", "closed", "parked", "void")
MAX_LIMIT = 1000

# The case's own columns ...
_COLUMNS = """c.id, c.version, c.state, c.geom, c.category, c.source, c.priority, c.description,
       c.photos, c.feature_layer, c.feature_id, c.grid_code, c.area_code, c.subdistrict_code,
       c.squad, c.department, c.assignee, c.handled_by, c.duplicate_of, c.likely_duplicate_of,
       c.reported_by, c.reported_at, c.filed_at, c.closed_at, c.stage_started, c.stage_due,
       c.case_due, c.extension, c.extended, c.rework, c.order_number"""
# ... from twin.cases as it is now ...
NOW_ROWS = f"SELECT {_COLUMNS}, now() AS at FROM twin.cases c"
# ... or as its last event before a moment left it (what moves lives in the snapshot), for
# the cases changed since; those untouched since are read as they are.
_SNAPSHOT = """
SELECT c.id, e.version, s ->> 'state' AS state, c.geom, c.category, c.source, c.priority,
       c.description, c.photos, c.feature_layer, c.feature_id, s ->> 'grid_code' AS grid_code,
       s ->> 'area_code' AS area_code, c.subdistrict_code, s ->> 'squad' AS squad,
       s ->> 'department' AS department,
       s ->> 'assignee' AS assignee, s ->> 'handled_by' AS handled_by, c.duplicate_of,
       c.likely_duplicate_of, c.reported_by, c.reported_at,
       (s ->> 'filed_at')::timestamptz AS filed_at, (s ->> 'closed_at')::timestamptz AS closed_at,
       (s ->> 'stage_started')::timestamptz AS stage_started,
       (s ->> 'stage_due')::timestamptz AS stage_due, (s ->> 'case_due')::timestamptz AS case_due,
       s ->> 'extension' AS extension,
       ARRAY(SELECT jsonb_array_elements_text(s -> 'extended')) AS extended,
       (s ->> 'rework')::integer AS rework, c.order_number, CAST(:as_of AS timestamptz) AS at
  FROM twin.cases c
 CROSS JOIN LATERAL (SELECT e.version, e.snapshot AS s FROM twin.case_events e
                      WHERE e.case_id = c.id AND e.server_time <= :as_of
                      ORDER BY e.version DESC LIMIT 1) e
 WHERE c.reported_at <= :as_of AND c.changed_at > :as_of"""


def as_of_rows(where: str) -> str:
    """The cases (those meeting ``where``, a condition on ``c``) as they stood at ``:as_of``."""
    return (f"SELECT {_COLUMNS}, CAST(:as_of AS timestamptz) AS at FROM twin.cases c "
            f"WHERE c.changed_at <= :as_of AND {where} UNION ALL {_SNAPSHOT} AND {where}")


OVERDUE = ("(r.state IN ('reported', 'filed', 'dispatched', 'handled') "
            "AND (coalesce(r.stage_due < r.at, false) OR coalesce(r.case_due < r.at, false)))")

# One case as the API gives it, from a row r of the above and its category k.
FEATURE_SQL = f"""
json_build_object('type', 'Feature', 'id', r.id,
  'geometry', ST_AsGeoJSON(r.geom, 7)::json,
  'properties', json_build_object(
    'state', r.state, 'category', r.category, 'category_zh', k.name_zh,
    'category_en', k.name_en, 'kind', k.kind, 'source', r.source, 'priority', r.priority,
    'description', r.description, 'photos', r.photos,
    'feature', CASE WHEN r.feature_id IS NOT NULL
                    THEN json_build_object('layer', r.feature_layer, 'id', r.feature_id) END,
    'micro_grid', r.grid_code, 'residential_area', r.area_code,
    'subdistrict', r.subdistrict_code, 'squad', r.squad,
    'department', r.department, 'assignee', r.assignee, 'handled_by', r.handled_by,
    'reported_by', r.reported_by, 'reported_at', r.reported_at, 'filed_at', r.filed_at,
    'closed_at', r.closed_at, 'stage_started', r.stage_started,
    'due', json_build_object('stage', r.stage_due, 'case', r.case_due),
    'overdue', {OVERDUE},
    'overdue_hours', CASE WHEN {OVERDUE} THEN round((extract(epoch FROM twin.work_between(
        least(r.stage_due, r.case_due), r.at)) / 3600)::numeric, 2) END,
    'time_left_hours', CASE WHEN r.state IN ('reported', 'filed', 'dispatched', 'handled')
        AND NOT {OVERDUE} THEN round((extract(epoch FROM twin.work_between(
        r.at, least(r.stage_due, coalesce(r.case_due, r.stage_due)))) / 3600)::numeric, 2) END,
    'extension', r.extension, 'extended', r.extended, 'rework', r.rework,
    'duplicate_of', r.duplicate_of, 'likely_duplicate_of', r.likely_duplicate_of,
    'order_number', r.order_number, 'version', r.version, 'as_of', r.at))"""


def visible_sql(user: User) -> tuple[str, dict[str, Any]]:
    """The condition on ``c`` (a case row) of the cases ``user`` may see."""
    if user.role == "worker":
        return ("(c.grid_code = ANY(CAST(:my_grids AS text[])) OR c.assignee = :me)",
                {"my_grids": list(user.grids), "me": user.name})
    if user.role == "department":
        return "c.department = :my_department", {"my_department": user.department}
    if user.subdistrict is not None:
        return "c.subdistrict_code = :my_subdistrict", {"my_subdistrict": user.subdistrict}
    return "true", {}


def case_feature(conn: Connection, case_id: int) -> dict[str, Any]:
    """One case as it is now (no permission check: the caller has made it)."""
    found = conn.execute(text(f"SELECT {FEATURE_SQL} FROM ({NOW_ROWS} WHERE c.id = :id) r "
                              "JOIN twin.case_categories k ON k.code = r.category"),
                         {"id": case_id}).scalar()
    if found is None:
        raise NotFound(f"no case {case_id}", [Problem("id", case_id, "no such case", "无此案件")])
    return dict(found)


def get_case(engine: Engine, user: User, case_id: int, as_of: datetime | None = None
             ) -> dict[str, Any]:
    """A case with its stages (each with its start, due, end and whether it ran late) and
    the moves it may make now."""
    where, params = visible_sql(user)
    mine = f"c.id = :id AND {where}"
    rows = as_of_rows(mine) if as_of else f"{NOW_ROWS} WHERE {mine}"
    with engine.connect() as conn:
        found = conn.execute(text(
            f"SELECT {FEATURE_SQL} FROM ({rows}) r "
            "JOIN twin.case_categories k ON k.code = r.category"),
            params | {"id": case_id, "as_of": as_of}).scalar()
        if found is None:
            raise NotFound(f"no case {case_id}", [Problem("id", case_id, "no such case (or "
                                                          "not yours to see)", "无此案件")])
        case = dict(found)
        props = case["properties"]
        props["stages"] = conn.execute(text("""
            SELECT coalesce(json_agg(json_build_object(
                       'state', state, 'started', started, 'due', due, 'ended', ended,
                       'late', coalesce(ended, :at) > due) ORDER BY version), '[]')
              FROM (SELECT e.version, e.snapshot ->> 'state' AS state,
                           (e.snapshot ->> 'stage_started')::timestamptz AS started,
                           (e.snapshot ->> 'stage_due')::timestamptz AS due,
                           lead(e.server_time) OVER (ORDER BY e.version) AS ended
                      FROM twin.case_events e
                     WHERE e.case_id = :id AND e.action IN ('report', 'transition')
                       AND e.server_time <= :at) s"""),
            {"id": case_id, "at": props["as_of"]}).scalar()
        props["allowed"] = list(conn.execute(text(
            "SELECT to_state FROM twin.case_transitions WHERE from_state = :s ORDER BY to_state"),
            {"s": props["state"]}).scalars())
    return case


def case_events(engine: Engine, user: User, case_id: int) -> list[dict[str, Any]]:
    """Every step of a case, oldest first."""
    where, params = visible_sql(user)
    with engine.connect() as conn:
        if not conn.execute(text(f"SELECT EXISTS (SELECT FROM twin.cases c WHERE c.id = :id "
                                 f"AND {where})"), params | {"id": case_id}).scalar():
            raise NotFound(f"no case {case_id}", [Problem("id", case_id, "no such case (or not "
                                                          "yours to see)", "无此案件")])
        rows = conn.execute(text("""
            SELECT json_build_object('id', e.id, 'version', e.version, 'action', e.action,
                     'from', e.from_state, 'to', e.to_state, 'server_time', e.server_time,
                     'device_time', e.client_time, 'actor', e.actor, 'role', e.role,
                     'department', e.department, 'device', e.device, 'reason', e.reason,
                     'approver', e.approver, 'photos', e.photos,
                     'position', ST_AsGeoJSON(e.position, 7)::json, 'accuracy_m', e.accuracy_m,
                     'edit_id', e.edit_id, 'changed', e.changed, 'case', e.snapshot)
              FROM twin.case_events e WHERE e.case_id = :id ORDER BY e.version"""),
            {"id": case_id}).scalars()
        return [dict(r) for r in rows]


@dataclass(frozen=True)
class CaseQuery:
    """What a list of cases is narrowed to. ``where`` is an extra condition on the row ``r``
    (a KPI figure's) with its parameters."""

    bbox: tuple[float, float, float, float] | None = None
    states: tuple[str, ...] = ()
    overdue: bool | None = None
    category: str | None = None
    micro_grid: str | None = None
    residential_area: str | None = None
    department: str | None = None
    assignee: str | None = None
    source: str | None = None
    reported: tuple[datetime | None, datetime | None] | None = None  # datetime interval
    as_of: datetime | None = None
    where: tuple[str, dict[str, Any]] | None = None
    limit: int = 100
    after: int = 0


def _conditions(q: CaseQuery) -> tuple[list[str], dict[str, Any]]:
    wanted = {"category": q.category, "grid_code": q.micro_grid,
              "area_code": q.residential_area, "department": q.department,
              "assignee": q.assignee, "source": q.source}
    conds = [f"r.{col} = :{col}" for col, value in wanted.items() if value is not None]
    params: dict[str, Any] = {col: value for col, value in wanted.items() if value is not None}
    unknown = [s for s in q.states if s not in STATES]
    if unknown:
        raise InvalidInput(f"state: unknown {unknown[0]}", [Problem(
            "state", unknown[0], f"one of {', '.join(STATES)}", "状态无效")])
    if q.states:
        conds.append("r.state = ANY(CAST(:states AS text[]))")
        params["states"] = list(q.states)
    if q.overdue is not None:
        conds.append(OVERDUE if q.overdue else f"NOT {OVERDUE}")
    if q.bbox is not None:
        conds.append("r.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params |= dict(zip(("x0", "y0", "x1", "y1"), q.bbox, strict=True))
    if q.reported is not None:
        start, end = q.reported
        if start is not None:
            conds.append("r.reported_at >= :rep_from")
            params["rep_from"] = start
        if end is not None:
            conds.append("r.reported_at <= :rep_to")
            params["rep_to"] = end
    if q.where is not None:
        conds.append(q.where[0])
        params |= q.where[1]
    return conds, params


def list_cases(engine: Engine, user: User, q: CaseQuery) -> dict[str, Any]:
    """A page of cases (by id, after ``q.after``) as a FeatureCollection, with the number
    matched; ``next`` is the cursor of the next page, if any."""
    if not 1 <= q.limit <= MAX_LIMIT:
        raise InvalidInput(f"limit: 1 to {MAX_LIMIT}", [Problem(
            "limit", q.limit, f"between 1 and {MAX_LIMIT}", f"须在1到{MAX_LIMIT}之间")])
    where, params = visible_sql(user)
    conds, more = _conditions(q)
    rows = as_of_rows(where) if q.as_of else f"{NOW_ROWS} WHERE {where}"
    filtered = f"SELECT * FROM ({rows}) r WHERE {' AND '.join(conds) or 'true'}"
    params |= more | {"as_of": q.as_of, "after": q.after, "limit": q.limit + 1}
    with engine.connect() as conn:
        features = list(conn.execute(text(
            f"SELECT {FEATURE_SQL} FROM ({filtered} AND r.id > :after ORDER BY r.id "
            "LIMIT :limit) r JOIN twin.case_categories k ON k.code = r.category ORDER BY r.id"),
            params).scalars())
        matched = conn.execute(text(f"SELECT count(*) FROM ({filtered}) r"), params).scalar()
    more_pages = len(features) > q.limit
    features = features[:q.limit]
    return {"type": "FeatureCollection", "features": [dict(f) for f in features],
            "numberMatched": matched, "numberReturned": len(features),
            "next": features[-1]["id"] if more_pages else None}


def csv_rows(collection: dict[str, Any]) -> list[dict[str, Any]]:
    """The flat rows of a page of cases, for CSV: one line per case."""
    out = []
    for f in collection["features"]:
        p = dict(f["properties"])
        lon, lat = f["geometry"]["coordinates"]
        due = p.pop("due")
        feature = p.pop("feature")
        row = {"id": f["id"], "lon": lon, "lat": lat, **p, "stage_due": due["stage"],
               "case_due": due["case"],
               "feature": f"{feature['layer']}/{feature['id']}" if feature else None}
        out.append({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                    for k, v in row.items()})
    return out
