"""Cases (一网统管) as the command centre watches them: what is open and overdue now, and what
was filed and closed today, in total and per micro-grid or residential area. As in
``twin.cases.kpis``, each figure is a condition on a case row declared once here: counted for
the map's choropleth and the board, listed by its link (``GET /kpis/cases?figure=...``).

Days are the subdistrict's (``TWIN_TIME_ZONE``); "now" is the database's."""

# SQL here is composed of fixed fragments; every value is bound.
# ruff: noqa: S608
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from twin.cases.kpis import FIGURES as CASE_FIGURES
from twin.cases.reads import OPEN, CaseQuery, visible_sql
from twin.errors import InvalidInput, Problem
from twin.layer import GROUP_COLUMNS, GROUPS_ZH
from twin.users import User

_OPEN = "r.state IN (" + ", ".join(f"'{s}'" for s in OPEN) + ")"

# figure -> (condition on a case row r as it is now, in words, 中文): twin.cases.kpis's own
# conditions, with :from and :upto bounding today in the subdistrict's time zone.
FIGURES: dict[str, tuple[str, str, str]] = {
    "open": (_OPEN, "cases open now (reported, filed, dispatched or handled)", "在办案件"),
    "overdue": (CASE_FIGURES["overdue_open"][0],
                "open cases past a stage's or the case's deadline now", "超期案件"),
    "filed_today": (CASE_FIGURES["filed"][0], "cases filed today", "今日立案"),
    "closed_today": (CASE_FIGURES["closed_in_period"][0], "cases closed (verified) today",
                     "今日结案"),
}
# the groups the figures come by, and the case column that names a group

# The cases that can count at all: open now, or filed or closed today (the indexes on state,
# filed_at and closed_at keep a board's refresh off the closed half year).
_CANDIDATES = ("(c.state IN ('reported', 'filed', 'dispatched', 'handled') "
               "OR c.filed_at >= :from OR c.closed_at >= :from)")
_ROWS = """
SELECT c.id, c.state, c.grid_code, c.area_code, c.subdistrict_code, c.filed_at, c.closed_at,
       c.stage_due, c.case_due, now() AS at
  FROM twin.cases c WHERE {candidates} AND {visible}"""


def today(time_zone: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The start of today and of tomorrow where the subdistrict counts its days."""
    zone = ZoneInfo(time_zone)
    moment = (now or datetime.now(zone)).astimezone(zone)
    start = datetime.combine(moment.date(), datetime.min.time(), zone)
    return start, datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), zone)


def _grouping(by: str | None) -> str | None:
    if by is None:
        return None
    column = next((c for g, c in GROUP_COLUMNS.items() if g == by), None)
    if column is None:
        raise InvalidInput(f"by: unknown grouping {by}", [Problem(
            "by", by, f"one of {', '.join(GROUP_COLUMNS)}", GROUPS_ZH)])
    return column


def case_figures(conn: Connection, user: User, by: str, time_zone: str,
                 base_url: str = "/kpis/cases") -> dict[str, Any]:
    """The figures now, in total (with the link listing each) and per group of ``by`` (grid
    or area; groups with none of them left out), the formulas, today's bounds and the newest
    case event (which moves whenever any case does)."""
    column = _grouping(by)
    day, next_day = today(time_zone)
    where, params = visible_sql(user)
    rows = _ROWS.format(candidates=_CANDIDATES, visible=where)
    counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}"
                       for name, (cond, _, _) in FIGURES.items())
    found = conn.execute(text(
        f"SELECT r.{column} AS key, GROUPING(r.{column}) AS total, {counts} FROM ({rows}) r "
        f"GROUP BY ROLLUP (r.{column})"), params | {"from": day, "upto": next_day}
    ).mappings().all()
    newest = conn.execute(text("SELECT max(id) FROM twin.case_events")).scalar()
    total = next((dict(r) for r in found if r["total"]), None) or {}
    groups = {r["key"]: {name: r[name] for name in FIGURES}
              for r in found if not r["total"] and r["key"] is not None}
    return {
        "day": {"from": day.isoformat(), "to": next_day.isoformat()},
        "formulas": {name: f"{words} ({zh}): {cond}" for name, (cond, words, zh)
                     in FIGURES.items()},
        "total": {name: total.get(name, 0) for name in FIGURES},
        "links": {name: f"{base_url}?{urlencode({'figure': name})}" for name in FIGURES},
        "groups": groups,
        "newest_event": newest or 0,
    }


def figure_query(figure: str, by: str | None, key: str | None, time_zone: str,
                 limit: int = 100, after: int = 0) -> CaseQuery:
    """The list a figure's link names: its condition (in one group when ``by`` is given), as
    a query of ``twin.cases.reads.list_cases``."""
    if figure not in FIGURES:
        raise InvalidInput(f"figure: unknown {figure}", [Problem(
            "figure", figure, f"one of {', '.join(FIGURES)}", "指标无效")])
    column = _grouping(by)
    day, next_day = today(time_zone)
    cond = FIGURES[figure][0]
    params: dict[str, Any] = {"from": day, "upto": next_day}
    if column is not None:
        cond += f" AND r.{column} IS NOT DISTINCT FROM :figure_key"
        params["figure_key"] = key or None
    return CaseQuery(where=(cond, params), limit=limit, after=after)
