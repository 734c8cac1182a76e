"""Period reports of the change log: the numbers a half-year work report quotes.

Per micro-grid, residential area, actor or layer: inserts, updates, deletes and status
transitions (updates that changed the layer's state field) in [from, to). Whole local months
and days are summed from ``twin.change_counts``, which a trigger on the log keeps; only the
partial days at the two ends are read from the log itself. So any range is exact, and half a
year costs a sum over some monthly counts rather than a scan of millions of changes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import Engine, text

from twin.errors import InvalidInput, Problem
from twin.registry import all_layers
from twin.store.db import LOAD_DEVICE

GroupBy = Literal["layer", "grid", "area", "subdistrict", "actor"]
_GROUP_BY: dict[str, GroupBy] = {name: name for name in get_args(GroupBy)}

# The whole local days inside [start, end) and the instants they span; with none, both
# instants are one point inside the range, so the ends cover all of it.
_WHOLE_DAYS = text("""
SELECT d.first_day, greatest(d.first_day, d.end_day) AS last_day,
       least(twin.day_start(d.first_day, b.zone), :end) AS whole_from,
       least(twin.day_start(greatest(d.first_day, d.end_day), b.zone), :end) AS whole_to
  FROM twin.change_counts_basis b,
       LATERAL (SELECT twin.change_day(:start, b.zone) AS start_day,
                       twin.change_day(:end, b.zone) AS end_day) s,
       LATERAL (SELECT s.start_day + (twin.day_start(s.start_day, b.zone) < :start)::int
                       AS first_day, s.end_day) d
""")

# Monthly counts for the whole months, daily ones for the other whole days, the log's own rows
# for the partial days at the ends. A month mostly inside the period is its monthly counts less
# the daily counts of its days outside (``sub``), which reads a few days instead of most of a
# month of daily rows. Each part names its period, so only that partition is read.
_COUNTS = text("""
SELECT CASE :by WHEN 'grid' THEN c.grid_code WHEN 'area' THEN c.area_code
                WHEN 'subdistrict' THEN g.subdistrict_code
                WHEN 'actor' THEN c.actor ELSE c.layer END AS key,
       c.layer, c.operation, c.state_from, c.state_to, sum(c.n)::bigint AS n
  FROM (SELECT layer, grid_code, area_code, actor, operation, state_from, state_to, n
          FROM twin.change_counts
         WHERE period = 'month' AND day >= :month_from AND day < :month_to
        UNION ALL
        SELECT layer, grid_code, area_code, actor, operation, state_from, state_to, n
          FROM twin.change_counts
         WHERE period = 'day' AND (day >= :add0 AND day < :add1 OR day >= :add2 AND day < :add3)
        UNION ALL
        SELECT layer, grid_code, area_code, actor, operation, state_from, state_to, -n
          FROM twin.change_counts
         WHERE period = 'day' AND (day >= :sub0 AND day < :sub1 OR day >= :sub2 AND day < :sub3)
        UNION ALL
        SELECT layer, grid_code, area_code, actor, operation, state_from, state_to, 1
          FROM twin.change_facts
         WHERE server_time >= :start AND server_time < :whole_from
            OR server_time >= :whole_to AND server_time < :end) AS c
  -- the rollup keeps grids; a grid's subdistrict is its outline's (only joined when asked)
  LEFT JOIN twin.features_micro_grids g
         ON :by = 'subdistrict' AND g.props ->> 'code' = c.grid_code
 WHERE (CAST(:layer AS text) IS NULL OR c.layer = :layer)
   AND (CAST(:grids AS text[]) IS NULL OR c.grid_code = ANY(:grids))
 GROUP BY 1, 2, 3, 4, 5
HAVING sum(c.n) <> 0
""")


@dataclass(frozen=True)
class ReportQuery:
    """Which changes to count: [start, end) grouped ``by``; ``grids`` limits a worker's view."""

    start: datetime
    end: datetime
    by: GroupBy = "layer"
    layer: str | None = None
    grids: tuple[str, ...] | None = None


def report_query(start: datetime | None, end: datetime | None, by: str | None = None,
                 layer: str | None = None, grids: tuple[str, ...] | None = None
                 ) -> ReportQuery:
    """Check a report's parameters as the API and the command line give them, all at once."""
    problems = []
    if start is None:
        problems.append(Problem("from", None, "required: an RFC 3339 time", "缺少开始时间"))
    if end is None:
        problems.append(Problem("to", None, "required: an RFC 3339 time", "缺少结束时间"))
    if start is not None and end is not None and end <= start:
        problems.append(Problem("to", end.isoformat(), f"must be later than from "
                                f"({start.isoformat()}): the range is [from, to)",
                                "结束时间须晚于开始时间"))
    chosen = _GROUP_BY.get(by or "layer")
    if chosen is None:
        problems.append(Problem("by", by, f"one of {', '.join(_GROUP_BY)}", "分组方式无效"))
    if layer is not None and layer not in all_layers():
        problems.append(Problem("layer", layer, f"no such layer; layers: "
                                f"{', '.join(all_layers())}", "无此图层"))
    if problems or start is None or end is None or chosen is None:
        first = problems[0]
        raise InvalidInput(f"{first.field}={first.value}: {first.reason}", problems)
    return ReportQuery(start, end, chosen, layer, grids)


@dataclass
class Counts:
    """What one group did; ``transitions`` are among the updates."""

    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    transitions: int = 0

    @property
    def changes(self) -> int:
        return self.inserts + self.updates + self.deletes

    def add(self, other: Counts) -> None:
        self.inserts += other.inserts
        self.updates += other.updates
        self.deletes += other.deletes
        self.transitions += other.transitions

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "changes": self.changes}


@dataclass(frozen=True)
class Transition:
    """How often features of a layer went from one state to another."""

    layer: str
    state_from: str
    state_to: str
    n: int

    def label(self, state: str) -> str:
        """The state's bilingual label from the layer (e.g. 堵塞 blocked), or the state."""
        return all_layers()[self.layer].state_labels.get(state, state)

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "from": self.state_from, "to": self.state_to,
                "from_label": self.label(self.state_from),
                "to_label": self.label(self.state_to), "n": self.n}


@dataclass
class Report:
    """Counts per group (key None: changes with no micro-grid or area), and the transitions."""

    query: ReportQuery
    groups: dict[str | None, Counts] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)

    @property
    def total(self) -> Counts:
        total = Counts()
        for counts in self.groups.values():
            total.add(counts)
        return total

    def as_dict(self) -> dict[str, Any]:
        q = self.query
        return {"from": q.start.isoformat(), "to": q.end.isoformat(), "by": q.by,
                "layer": q.layer,
                "groups": [{q.by: key, **counts.as_dict()} for key, counts in self.groups.items()],
                "total": self.total.as_dict(),
                "transitions": [t.as_dict() for t in self.transitions]}


def _whole_months(first_day: date, last_day: date) -> tuple[date, date]:
    """The whole months among the days [first_day, last_day), as [first, last) dates; with
    none, an empty pair at last_day, so the days on either side are all of them."""
    first = first_day if first_day.day == 1 else (
        first_day.replace(day=1) + timedelta(days=32)).replace(day=1)
    last = last_day.replace(day=1)
    return (first, last) if first < last else (last_day, last_day)


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _parts(first_day: date, last_day: date) -> dict[str, date]:
    """Which counts make the whole days [first_day, last_day): monthly ones for
    [month_from, month_to), daily ones added for [add0, add1) and [add2, add3) and taken away
    for [sub0, sub1) and [sub2, sub3). A month at either end of whole months that the days
    cover for the most part is taken whole, less its days outside."""
    first, last = _whole_months(first_day, last_day)
    add, sub = [(first_day, first), (last, last_day)], [(first, first), (last, last)]
    if first < last:  # whole months: the part months at their ends may be taken whole
        month = first_day.replace(day=1)
        if first_day < first and (first_day - month) < (first - first_day):
            add[0], sub[0], first = (first, first), (month, first_day), month
        end = _next_month(last)
        if last < last_day and (end - last_day) < (last_day - last):
            add[1], sub[1], last = (last, last), (last_day, end), end
    return {"month_from": first, "month_to": last,
            "add0": add[0][0], "add1": add[0][1], "add2": add[1][0], "add3": add[1][1],
            "sub0": sub[0][0], "sub1": sub[0][1], "sub2": sub[1][0], "sub3": sub[1][1]}


def edits_beyond_loads(engine: Engine, query: ReportQuery) -> bool:
    """Whether anything but a bulk load changed the twin in the period (a fresh sample twin
    holds only its load: its report says nothing of the work done)."""
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT EXISTS (SELECT FROM twin.changes WHERE server_time >= :start "
            "AND server_time < :end AND device IS DISTINCT FROM :load)"),
            {"start": query.start, "end": query.end, "load": LOAD_DEVICE}).scalar())


def change_report(engine: Engine, query: ReportQuery) -> Report:
    """Count the changes of ``query``; groups in key order, transitions most frequent first."""
    with engine.connect() as conn:
        # compiling a plan for ~10^5 rows costs more than it saves
        conn.execute(text("SET LOCAL jit = off"))
        days = conn.execute(_WHOLE_DAYS, {"start": query.start, "end": query.end}).one()
        rows = conn.execute(_COUNTS, {
            **days._asdict(), **_parts(days.first_day, days.last_day),
            "start": query.start, "end": query.end, "by": query.by, "layer": query.layer,
            "grids": list(query.grids) if query.grids is not None else None,
        }).all()
    groups: dict[str | None, Counts] = {}
    moves: Counter[tuple[str, str, str]] = Counter()
    for key, layer, operation, state_from, state_to, n in rows:
        moved = state_from is not None and state_to is not None and state_from != state_to
        counts = Counts(**{f"{operation}s": n}, transitions=n if moved else 0)
        groups.setdefault(key, Counts()).add(counts)
        if moved:
            moves[(layer, state_from, state_to)] += n
    order = sorted(groups, key=lambda k: (k is None, k or ""))
    return Report(query, {key: groups[key] for key in order},
                  [Transition(*move, n) for move, n in sorted(
                      moves.items(), key=lambda item: (-item[1], item[0]))])
