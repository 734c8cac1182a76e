"""12345 hotline orders as the command centre watches them: on the board, the orders received
today, those waiting for first contact, the queue of orders not placed, open warnings
(dissatisfied callers) and the late ones, each a condition on an order declared once here
with the ``GET /orders`` filters that list the same orders (its link); the hotline's rates by
department for the current month or half year (``twin.hotline.kpis``); on the live map, the
placed open orders by state (colours, legend and how often the page asks again).

Days and periods are the subdistrict's (``TWIN_TIME_ZONE``); "now" is the database's. No
caller's name or phone is read here."""

# SQL here is composed of fixed fragments; every value is bound.
# ruff: noqa: S608
from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from twin.errors import InvalidInput, Problem
from twin.hotline.kpis import RATES, kpis
from twin.hotline.loop import visible_sql
from twin.hotline.reads import LATE, OPEN, QUEUED, WAITING
from twin.maps.cases import today
from twin.times import parse_day_or_time
from twin.users import User

_OPEN = "o.state IN (" + ", ".join(f"'{s}'" for s in OPEN) + ")"

# figure -> (condition on an order row o now, the GET /orders filters listing exactly those
# orders ("{day}" and "{next_day}" are today's bounds), in words, 中文). :from and :upto bound
# today. A test holds each count to its link's numberMatched.
FIGURES: dict[str, tuple[str, dict[str, str], str, str]] = {
    "received_today": ("o.received_at >= :from AND o.received_at < :upto",
                       {"from": "{day}", "to": "{next_day}"},
                       "orders received today (by the city system's time)", "今日受理"),
    "waiting_contact": (WAITING["contact"], {"waiting": "contact"},
                        "orders accepted and waiting for first contact", "待先行联系"),
    "queued": (f"{QUEUED} AND {_OPEN}", {"queued": "true", "state": ",".join(OPEN)},
               "open orders the twin could not place from their address (the queue)",
               "待定位"),
    "warnings": (f"o.warning AND {_OPEN}", {"warning": "true", "state": ",".join(OPEN)},
                 "open orders whose caller was dissatisfied at a return visit", "不满意预警"),
    "late": (f"({LATE})", {"late": "true"},
             "orders past the deadline of the step they wait for now", "超时工单"),
}
# The orders that can count at all: open, or received today (the indexes on open states and on
# received_at keep a board's refresh off the closed months).
_CANDIDATES = f"({_OPEN} OR o.received_at >= :from)"

# The rates the board shows, in this order (their formulas are twin.hotline.kpis.RATES).
BOARD_RATES = ("accepted_in_time_rate", "contacted_in_time_rate", "on_time_rate",
               "satisfaction_rate", "reopen_rate")
PERIODS = {"month": ("本月", "this month"), "half_year": ("本半年", "this half year")}

# ---- the live map ----------------------------------------------------------------------------
# The states drawn (open orders that have a place), their colours and labels; a warning's ring
# and a late order's mark; how often the page asks again (an order runs late by the clock
# passing, with no event to signal it) and how many pages of 1,000 orders it reads at most.
ORDER_STATES = {
    "received": ("#8e24aa", "待签收 received"),
    "accepted": ("#1e88e5", "已签收 accepted"),
    "contacted": ("#00897b", "已先行联系 contacted"),
    "replied": ("#43a047", "已答复待回访 replied"),
    "reopened": ("#ef6c00", "重办 reopened"),
    "closed": ("#78909c", "办结 closed"),
    "returned": ("#bdbdbd", "退单 returned"),
}
ORDER_SHOWN = OPEN
ORDER_WARNING = "#c51162"
ORDER_LATE = "#d50000"
ORDER_POLL_MS = 5_000
ORDER_PAGES = 5

# An order is a small square (a case is round) in its state's colour; a warning ringed, a late
# one marked "!" with a red border; a cluster holding either ringed the same way.
ORDER_CSS = """
.twin-order { border-radius: 3px; border: 2px solid #fff; box-sizing: border-box;
  box-shadow: 0 0 2px rgba(0,0,0,.6); color: #fff; font: bold 11px/1 system-ui, sans-serif;
  display: flex; align-items: center; justify-content: center; }
.twin-order.late { border-color: LATE; }
.twin-order.warning { box-shadow: 0 0 0 2px #fff, 0 0 0 5px WARNING; }
.twin-order-cluster div { background: rgba(0,137,123,.8); color: #fff; font-weight: bold; }
.twin-order-cluster { background: rgba(0,137,123,.3); border-radius: 6px; }
.twin-order-cluster.late div { background: LATE; }
.twin-order-cluster.warning { box-shadow: 0 0 0 3px WARNING; }
.twin-order-popup .twin-order-state { display: inline-block; padding: 0 6px; border-radius: 3px;
  color: #fff; margin-right: 6px; }
.twin-order-popup .twin-order-late { color: LATE; font-weight: bold; margin-right: 6px; }
.twin-order-popup .twin-order-warning { color: WARNING; font-weight: bold; }
.twin-order-popup td.late { color: LATE; font-weight: bold; }
.twin-legend .twin-order-swatch { display: inline-block; width: 10px; height: 10px;
  margin: 0 8px 0 2px; border-radius: 2px; vertical-align: middle; box-sizing: border-box; }
.twin-legend .twin-order-swatch.warning { border: 2px solid WARNING; }
.twin-legend .twin-order-swatch.late { border: 2px solid LATE; }
""".replace("WARNING", ORDER_WARNING).replace("LATE", ORDER_LATE)


def map_config() -> dict[str, Any]:
    """What the live map's script needs to draw the orders (``cfg.orders``)."""
    return {"states": {state: {"colour": colour, "label": label}
                       for state, (colour, label) in ORDER_STATES.items()},
            "shown": list(ORDER_SHOWN), "warning": ORDER_WARNING, "late": ORDER_LATE,
            "poll_ms": ORDER_POLL_MS, "pages": ORDER_PAGES}


def legend_html() -> str:
    """The orders' colours by state, and how a warning and a late order look (HTML, escaped)."""
    items = "".join(f'<li><span class="twin-order-swatch" style="background:{escape(colour)}">'
                    f"</span>{escape(label)}</li>"
                    for state, (colour, label) in ORDER_STATES.items() if state in ORDER_SHOWN)
    marks = ('<li><span class="twin-order-swatch warning"></span>'
             "不满意预警 warning (圈 ring)</li>"
             '<li><span class="twin-order-swatch late"></span>超时 late (!)</li>')
    return f"<ul><li>热线工单 Hotline orders (12345)<ul>{items}{marks}</ul></li></ul>"


# ---- the board -------------------------------------------------------------------------------
def board_period(period: str | None, start: str | None, end: str | None, time_zone: str,
                 now: datetime | None = None) -> tuple[str | None, datetime, datetime]:
    """The rates' period: the current ``month`` (the default) or ``half_year`` of the
    subdistrict's calendar, or ``start`` to ``end`` (days or RFC 3339 times). Counted up to
    now at most, as the cases' rates are: twin.hotline.kpis counts a deadline falling in the
    period as due, and one still ahead is not missed yet."""
    zone = ZoneInfo(time_zone)
    moment = (now or datetime.now(zone)).astimezone(zone).replace(microsecond=0)
    if start is not None or end is not None:
        if period is not None or start is None or end is None:
            raise InvalidInput("give a period, or from and to", [Problem(
                "period" if period is not None else "from" if start is None else "to",
                period or start or end, "either period, or both from and to",
                "须给出period,或同时给出from和to")])
        first = parse_day_or_time("from", start, time_zone)
        last = parse_day_or_time("to", end, time_zone)
        assert first is not None and last is not None  # given, so parsed or refused
        return None, first, min(last, moment)
    name = period or "month"
    if name not in PERIODS:
        raise InvalidInput(f"period: unknown {name}", [Problem(
            "period", name, f"one of {', '.join(PERIODS)}", "期间须为month或half_year")])
    if name == "month":
        first = datetime(moment.year, moment.month, 1, tzinfo=zone)
    else:
        first = datetime(moment.year, 1 if moment.month <= 6 else 7, 1, tzinfo=zone)
    return name, first, moment


def hotline_board(conn: Connection, user: User, time_zone: str, base_url: str = "/orders",
                  period: str | None = None, start: str | None = None,
                  end: str | None = None) -> dict[str, Any]:
    """The board's hotline panel: the figures now (those ``user`` may see; each with its
    formula and the link listing it, ``base_url`` being ``GET /orders``), the newest order
    event (which moves whenever an order does), and the rates by department over the period
    (``board_period``) with the departments' names."""
    day, next_day = today(time_zone)
    name, first, last = board_period(period, start, end, time_zone)
    where, params = visible_sql(user)
    counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {figure}"
                       for figure, (cond, _, _, _) in FIGURES.items())
    row = conn.execute(text(
        f"SELECT {counts}, (SELECT max(id) FROM twin.order_events) AS newest "
        f"FROM twin.orders o WHERE {_CANDIDATES} AND {where}"),
        params | {"from": day, "upto": next_day}).mappings().one()
    bounds = {"day": day.date().isoformat(), "next_day": next_day.date().isoformat()}
    departments = {r.code: {"name_zh": r.name_zh, "name_en": r.name_en}
                   for r in conn.execute(text(
                       "SELECT code, name_zh, name_en FROM twin.departments ORDER BY code"))}
    label = PERIODS.get(name or "", ("期间", "period"))
    return {
        "time_zone": time_zone,
        "day": {"from": day.isoformat(), "to": next_day.isoformat()},
        "formulas": {figure: f"{words} ({zh}): {cond}"
                     for figure, (cond, _, words, zh) in FIGURES.items()},
        "total": {figure: row[figure] for figure in FIGURES},
        "links": {figure: f"{base_url}?" + urlencode(
                      {k: v.format(**bounds) for k, v in filters.items()})
                  for figure, (_, filters, _, _) in FIGURES.items()},
        "newest_event": row["newest"] or 0,
        "period": {"name": name, "name_zh": label[0], "name_en": label[1],
                   "from": first.isoformat(), "to": last.isoformat()},
        "rates": kpis(conn, first, last, "department", base_url),
        "board_rates": [{"name": rate, "numerator": RATES[rate][0],
                         "denominator": RATES[rate][1], "zh": RATES[rate][2],
                         "en": RATES[rate][3]} for rate in BOARD_RATES],
        "departments": departments,
    }

