"""The hotline's rates for a period, by micro-grid, residential area, department, kind or
duty, each figure declared once as a condition on an order (used both to count and to list
the orders counted). As published centres count them (data/hotline_rules.toml, [rates]):
a rate of a deadline divides by the orders whose deadline fell in the period (应办结), an
order sent back before its deadline is not due; a step counts only if it happened by then,
so a past period's figures are what they were at its end (stamps are set once)."""

# SQL here is composed of fixed fragments; every value is bound.
# ruff: noqa: S608
from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, text

from twin.errors import InvalidInput, Problem
from twin.layer import GROUP_COLUMNS

IN = "{col} >= :start AND {col} < :end"


def _due(step: str) -> str:
    """Orders whose ``step`` deadline fell in the period, and by now (a deadline still ahead
    is not missed yet), and that were not sent back first."""
    return (f"(o.{step}_due >= :start AND o.{step}_due < least(CAST(:end AS timestamptz), "
            f"now()) AND NOT (o.state = 'returned' AND o.closed_at <= o.{step}_due))")


# The return visits of the period, per order: the first verdict counts (a caller satisfied
# only after re-handling was not satisfied with the handling).
VISITS = """
SELECT order_id, bool_or(to_state = 'reopened') AS reopened,
       (array_agg(verdict ORDER BY version))[1] AS verdict
  FROM twin.order_events
 WHERE action = 'transition' AND from_state = 'replied'
   AND server_time >= :start AND server_time < :end
 GROUP BY order_id"""

FIGURES: dict[str, tuple[str, str, str]] = {  # name: (condition on o and v, zh, en)
    "received": (IN.format(col="o.received_at"), "受理工单", "orders received"),
    "repeat_calls": (f"{IN.format(col='o.received_at')} AND o.repeat_of IS NOT NULL",
                     "重复来电", "repeat calls (merged)"),
    "accept_due": (_due("accept"), "应签收", "due to be accepted"),
    "accepted_in_time": (f"{_due('accept')} AND o.accepted_at <= o.accept_due",
                         "及时签收", "accepted in time"),
    "contact_due": (_due("contact"), "应先行联系", "due for first contact"),
    "contacted_in_time": (f"{_due('contact')} AND o.contacted_at <= o.contact_due",
                          "及时先行联系", "first contact in time"),
    "handle_due": (_due("handle"), "应办结", "due to be handled"),
    "handled_on_time": (f"{_due('handle')} AND o.replied_at <= o.handle_due",
                        "按期办结", "handled on time"),
    "visited": ("v.order_id IS NOT NULL", "回访", "return visits"),
    "satisfied": ("v.verdict IN ('satisfied', 'basic')", "满意(含基本满意)",
                  "satisfied or basically satisfied"),
    "reopened": ("coalesce(v.reopened, false)", "不满意重办", "re-opened (dissatisfied)"),
}
RATES = {  # name: (numerator, denominator, zh, en)
    "accepted_in_time_rate": ("accepted_in_time", "accept_due", "及时签收率",
                              "accepted in time"),
    "contacted_in_time_rate": ("contacted_in_time", "contact_due", "先行联系及时率",
                               "first contact in time"),
    "on_time_rate": ("handled_on_time", "handle_due", "按期办结率", "handled on time"),
    "satisfaction_rate": ("satisfied", "visited", "回访满意率", "return-visit satisfaction"),
    "reopen_rate": ("reopened", "visited", "重办率", "re-opened"),
    "repeat_rate": ("repeat_calls", "received", "重复来电率", "repeat calls"),
}
GROUPS: dict[str, str] = {**{g: f"o.{column}" for g, column in GROUP_COLUMNS.items()},
                          "department": "o.department", "kind": "o.kind", "duty": "o.duty"}
# The orders that can count in a period: received before its end and either received in it,
# due at some step in it (every deadline comes after receipt), or visited in it.
SOURCE = f"""twin.orders o LEFT JOIN ({VISITS}) v ON v.order_id = o.id
 WHERE o.received_at < :end AND (o.received_at >= :start OR o.accept_due >= :start
       OR o.contact_due >= :start OR o.handle_due >= :start OR v.order_id IS NOT NULL)"""


def figure_where(name: str) -> tuple[str, dict[str, Any]]:
    """The orders a figure counts (with :start and :end bound), as a condition on ``o``."""
    if name not in FIGURES:
        raise InvalidInput(f"no figure {name}", [Problem(
            "figure", name, f"one of {', '.join(FIGURES)}", "无此指标")])
    return f"o.id IN (SELECT o.id FROM {SOURCE} AND {FIGURES[name][0]})", {}


def kpis(conn: Connection, start: datetime, end: datetime, by: str | None,
         base_url: str = "/orders") -> dict[str, Any]:
    """Every figure and rate per group (or in all), each figure with the link to its orders."""
    if by is not None and by not in GROUPS:
        raise InvalidInput(f"cannot group by {by}", [Problem(
            "by", by, f"one of {', '.join(GROUPS)}", "分组方式无效")])
    if end <= start:
        raise InvalidInput("the period ends before it starts", [Problem(
            "to", end.isoformat(), "after from", "结束时间须晚于开始时间")])
    key = GROUPS[by] if by else "NULL::text"
    counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}"
                       for name, (cond, _, _) in FIGURES.items())
    rows = conn.execute(text(f"SELECT {key} AS key, {counts} FROM {SOURCE} GROUP BY 1 "
                             f"ORDER BY 1 NULLS LAST"), {"start": start, "end": end}).mappings()
    groups = []
    total = dict.fromkeys(FIGURES, 0)
    for row in rows:
        figures = {name: row[name] for name in FIGURES}
        if not any(figures.values()):
            continue
        for name in FIGURES:
            total[name] += figures[name]
        groups.append({"key": row["key"], **figures, **_rates(figures),
                       "links": _links(base_url, start, end, by, row["key"])})
    return {
        "from": start.isoformat(), "to": end.isoformat(), "by": by,
        "formulas": {name: {"formula": f"{num} / {den}", "zh": zh, "en": en}
                     for name, (num, den, zh, en) in RATES.items()}
        | {name: {"counts": en, "zh": zh} for name, (_, zh, en) in FIGURES.items()},
        "total": {**total, **_rates(total), "links": _links(base_url, start, end, None, None)},
        "groups": groups if by else [],
    }


def _rates(figures: dict[str, int]) -> dict[str, float | None]:
    return {name: round(figures[num] / figures[den], 4) if figures[den] else None
            for name, (num, den, _, _) in RATES.items()}


def _links(base_url: str, start: datetime, end: datetime, by: str | None, key: str | None
           ) -> dict[str, str]:
    """Each figure's orders: GET /orders with the figure, the period and the group (the
    query's common part encoded once: a half year by grid has hundreds of groups)."""
    common = urlencode({"from": start.isoformat(), "to": end.isoformat(), "limit": 1000}
                       | ({by: key} if by is not None and key is not None else {}))
    return {name: f"{base_url}?figure={name}&{common}" for name in FIGURES}
