"""Honest rates: each figure is a set of cases, declared once here as a condition, counted for
the figures and listed for their links, read as the cases stood at the period's end (so a
past period reads the same later). Rates divide by the cases **due** in the period: a late
case that is never closed still counts against them (the trap behind "100% on time").

The figures follow 城市网格化管理 practice (GB/T 30428.3 evaluation: 立案数, 应结案数, 结案数,
按期结案数, 结案率 = 结案数 / 应结案数, 按期结案率 = 按期结案数 / 应结案数, 返工数)."""

# SQL here is composed of fixed fragments; every value is bound.
# ruff: noqa: S608
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from urllib.parse import urlencode

from sqlalchemy import Engine, text

from twin.cases.reads import NOW_ROWS, OVERDUE, as_of_rows, visible_sql
from twin.errors import InvalidInput, Problem
from twin.layer import GROUP_COLUMNS
from twin.users import User

Grouping = Literal["grid", "area", "subdistrict", "department", "category", "source"]
GROUPINGS: tuple[str, ...] = get_args(Grouping)
GROUP_COLUMN: dict[str, str] = {**{str(g): c for g, c in GROUP_COLUMNS.items()},
                                "department": "department", "category": "category",
                                "source": "source"}

# figure -> (condition on a case row r as of :upto, in words, 中文). :from and :upto bound the
# period; :upto is its end, or now for a period still running.
FIGURES: dict[str, tuple[str, str, str]] = {
    "reported": ("r.reported_at >= :from AND r.reported_at < :upto",
                 "cases reported in the period", "上报数"),
    "filed": ("r.filed_at >= :from AND r.filed_at < :upto",
              "cases filed in the period", "立案数"),
    "due": ("r.case_due >= :from AND r.case_due < :upto",
            "filed cases whose deadline (extensions included) fell in the period", "应结案数"),
    "closed": ("r.case_due >= :from AND r.case_due < :upto AND r.state = 'closed'",
               "of the due, those closed by the period's end", "结案数"),
    "closed_in_period": ("r.state = 'closed' AND r.closed_at >= :from AND r.closed_at < :upto",
                         "cases closed in the period, whenever they were due", "期内结案数"),
    "closed_on_time": ("r.case_due >= :from AND r.case_due < :upto AND r.state = 'closed' "
                       "AND r.closed_at <= r.case_due",
                       "of the due, those closed by their deadline", "按期结案数"),
    "rework": ("r.rework > 0 AND EXISTS (SELECT FROM twin.case_events w WHERE w.case_id = r.id "
               "AND w.from_state = 'handled' AND w.to_state = 'dispatched' "
               "AND w.server_time >= :from AND w.server_time < :upto)",
               "cases sent back by a failed verification in the period (counted once per "
               "failed check)", "返工案件"),
    "overdue_open": (OVERDUE,
                     "cases open at the period's end past a stage's or the case's deadline",
                     "超期未结案件"),
    "parked": ("r.state = 'parked'", "cases parked (挂账) at the period's end", "挂账案件"),
}
RATES = {"closure_rate": ("closed", "due", "结案率 = 结案数 / 应结案数"),
         "on_time_rate": ("closed_on_time", "due", "按期结案率 = 按期结案数 / 应结案数")}
# failed checks in the period per case, from the partial index of rework events, joined to the
# cases (a lookup per reworked case cost as much as all the other figures)
REWORK_JOIN = ("LEFT JOIN (SELECT w.case_id, count(*) AS n FROM twin.case_events w "
               "WHERE w.from_state = 'handled' AND w.to_state = 'dispatched' "
               "AND w.server_time >= :from AND w.server_time < :upto GROUP BY w.case_id) w "
               "ON w.case_id = r.id")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def upto(self) -> datetime:
        """The end, or now if the period is still running: figures are as of then."""
        return min(self.end, datetime.now(UTC))


def check_period(start: datetime, end: datetime) -> Period:
    if end <= start:
        raise InvalidInput("to must be after from", [Problem(
            "to", end.isoformat(), f"after from ({start.isoformat()})", "结束时间须晚于开始时间")])
    return Period(start, end)


def rows_sql(period: Period, user: User) -> tuple[str, dict[str, Any]]:
    """The visible cases as they stood at the period's end: the table itself for a period
    still running, the events' snapshots for one past. Cases that ended before it began and
    were not due in it are left out early."""
    where, params = visible_sql(user)
    params = params | {"from": period.start, "upto": period.upto, "as_of": period.upto}
    if period.upto >= datetime.now(UTC):
        return f"SELECT * FROM ({NOW_ROWS} WHERE {where}) r", params
    relevant = (f"{where} AND (c.closed_at IS NULL OR c.closed_at >= :from "
                "OR c.case_due >= :from)")
    return f"SELECT * FROM ({as_of_rows(relevant)}) r", params


def figure_where(name: str) -> str:
    if name not in FIGURES:
        raise InvalidInput(f"kpi: unknown figure {name}", [Problem(
            "kpi", name, f"one of {', '.join(FIGURES)}", "指标无效")])
    return FIGURES[name][0]


# Answers for periods that are over, kept: they are read as the cases stood at the period's
# end, so they change only if an event dated before that end arrives later (a generated
# history written by the schema's owner): each use checks the events added since.
_PAST: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
_PAST_KEPT = 32
_PAST_LOCK = threading.Lock()


def kpis(engine: Engine, user: User, period: Period, by: str | None,
         base_url: str = "/cases") -> dict[str, Any]:
    """The figures for the period in total and by ``by``, each with the link listing its cases,
    the rates, and the median working hours cases spent in each stage (JSON values only).
    A period that is over is computed once and kept while no event dated inside it arrives."""
    if by is not None and by not in GROUPINGS:
        raise InvalidInput(f"by: unknown grouping {by}", [Problem(
            "by", by, f"one of {', '.join(GROUPINGS)}", "分组无效")])
    if period.end > datetime.now(UTC):
        return _kpis(engine, user, period, by, base_url)
    where, params = visible_sql(user)
    key = json.dumps([engine.url.render_as_string(), period.start, period.end, by, base_url,
                      where, params], default=str, sort_keys=True)
    with engine.connect() as conn:
        with _PAST_LOCK:
            kept = _PAST.get(key)
        if kept is not None:
            answer, newest = kept
            since = conn.execute(text("SELECT min(server_time), max(id) FROM twin.case_events "
                                      "WHERE id > :id"), {"id": newest}).one()
            if since[0] is None or since[0] > period.end:
                with _PAST_LOCK:
                    _PAST[key] = (answer, since[1] or newest)
                    _PAST.move_to_end(key)
                return answer
        newest = conn.execute(text("SELECT coalesce(max(id), 0) FROM twin.case_events")
                              ).scalar_one()
    answer = _kpis(engine, user, period, by, base_url)
    with _PAST_LOCK:
        _PAST[key] = (answer, newest)
        _PAST.move_to_end(key)
        while len(_PAST) > _PAST_KEPT:
            _PAST.popitem(last=False)
    return answer


def _kpis(engine: Engine, user: User, period: Period, by: str | None,
          base_url: str) -> dict[str, Any]:
    rows, params = rows_sql(period, user)
    counts = ", ".join(
        f"count(*) FILTER (WHERE {cond}) AS {name}" for name, (cond, _, _) in FIGURES.items()
        if name != "rework")
    figures = f"{counts}, coalesce(sum(w.n), 0)::bigint AS rework"
    if by:  # the groups, then the grand total (GROUPING 1)
        key = f"r.{GROUP_COLUMN[by]}"
        sql = (f"SELECT {key} AS key, {figures} FROM ({rows}) r {REWORK_JOIN} "
               f"GROUP BY ROLLUP ({key}) ORDER BY GROUPING({key}), {key} NULLS FIRST")
    else:
        sql = f"SELECT NULL AS key, {figures} FROM ({rows}) r {REWORK_JOIN}"
    with engine.connect() as conn:
        found = [dict(r) for r in conn.execute(text(sql), params).mappings()]
        stages = _stage_hours(conn, period, user)
    total = found[-1]
    groups = found[:-1] if by else []
    period_params = {"from": period.start.isoformat(), "to": period.end.isoformat()}
    return {
        "period": {"from": period.start.isoformat(), "to": period.end.isoformat(),
                   "as_of": period.upto.isoformat()},
        "by": by,
        "formulas": {
            **{name: f"{words} ({zh}): {cond}" for name, (cond, words, zh) in FIGURES.items()},
            **{name: f"{num} / {den} ({zh}); null when nothing was due"
               for name, (num, den, zh) in RATES.items()},
            "rework": "failed verifications (handled -> dispatched) in the period (返工次数)",
            "stage_hours": "median working hours from a stage's start to the move out of it, "
                           "for moves in the period (各阶段用时中位数)"},
        "total": _group(total, None, None, base_url, period_params),
        "groups": [_group(g, g["key"], by, base_url, period_params) for g in groups],
        "stage_hours": stages,
    }


def _group(row: dict[str, Any], key: str | None, by: str | None, base_url: str,
           period_params: dict[str, str]) -> dict[str, Any]:
    """A group's figures and rates, and the links listing each figure's cases (``by`` None:
    the total's)."""
    out: dict[str, Any] = {"key": key}
    out |= {name: row[name] for name in FIGURES}
    for name, (num, den, _) in RATES.items():
        out[name] = round(row[num] / row[den], 4) if row[den] else None
    # the query string built once per group, the figure's name put in front (thousands of
    # groups: urlencode per link was most of a by-grid answer's time)
    rest = urlencode({**period_params, **({"by": by, "key": key or ""} if by else {})})
    out["links"] = {name: f"{base_url}?kpi={name}&{rest}" for name in FIGURES}
    return out


def _stage_hours(conn: Any, period: Period, user: User) -> dict[str, float | None]:
    """The median working hours of the moves in the period, by the stage they ended: from the
    index of moves alone for those who see every case, joined to the cases for the rest."""
    where, params = visible_sql(user)
    mine = "" if where == "true" else f"JOIN twin.cases c ON c.id = e.case_id AND {where}"
    rows = conn.execute(text(f"""
        SELECT e.from_state, percentile_cont(0.5) WITHIN GROUP (ORDER BY e.stage_hours) AS hours
          FROM twin.case_events e {mine}
         WHERE e.action = 'transition' AND e.server_time >= :from AND e.server_time < :upto
           AND e.from_state IN ('reported', 'filed', 'dispatched', 'handled')
         GROUP BY e.from_state"""), params | {"from": period.start, "upto": period.upto})
    found = {r.from_state: round(float(r.hours), 2) for r in rows if r.hours is not None}
    return {s: found.get(s) for s in ("reported", "filed", "dispatched", "handled")}


def kpi_where(name: str, period: Period, by: str | None, key: str | None
              ) -> tuple[str, dict[str, Any]]:
    """The condition a figure's link lists (GET /cases?kpi=...), on rows as of ``upto``."""
    cond = figure_where(name)
    params: dict[str, Any] = {"from": period.start, "upto": period.upto}
    if by is not None:
        if by not in GROUPINGS:
            raise InvalidInput(f"by: unknown grouping {by}", [Problem(
                "by", by, f"one of {', '.join(GROUPINGS)}", "分组无效")])
        cond += f" AND r.{GROUP_COLUMN[by]} IS NOT DISTINCT FROM :kpi_key"
        params["kpi_key"] = key or None
    return cond, params
