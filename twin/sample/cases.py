"""A generated half year of cases (一网统管): ``twin sample --cases N`` files N cases.

The sample's report needs work to count: cases found, filed, sent, handled, checked and
closed, some late, some sent back, some parked. As with the change history
(``twin.sample.history``), the only faithful way to make them is to run them through the
loop as its users do: every report is an INSERT into ``twin.cases`` and every step an
UPDATE of its state (or its extension), with the context ``twin.cases.loop`` sets, so the
triggers check each move, compute every deadline in working time and write every event. What
is generated:

- N cases **filed** (立案) in the spec's ``[history]`` period, and on top of them reports the
  dispatcher does not file (about 6 %): duplicates voided (作废, linked to the case they
  repeat, which the trigger has flagged) and reports not filed (不予立案);
- categories in realistic shares (``_WEIGHTS``); a category tied to a layer mostly lies at one
  of the twin's own features of it (a waste point, fire passage, charging point, building or
  street), linked to it, the others anywhere in a micro-grid;
- sources: grid workers (reporting in their own grid, on their tablet), patrols, the 12345
  hotline (with a work order number), residents, leaders and sensors (entered by the
  dispatcher);
- the loop in working time (the twin's own calendar, ``twin.work_periods`` and
  ``twin.calendar_days``): filed and dispatched (to the route filing proposes) by
  ``dispatcher``, handled by the assignee (the grid's worker or the squad's lead) or the
  category's department user, verified and closed by someone else (the dispatcher or the
  squad's lead) within 50 m with a photo. Most stages end well inside their limits; about
  5 % of cases are handled late, 3 % fail a verification first (返工), 1 % are parked (挂账)
  with a reason and an approver (some later unparked), and a few long ones ask for an
  extension (延期), mostly approved. Steps that would fall after the period are not taken:
  the period's last weeks end with cases still open, some overdue.

Each step is stamped through ``twin.clock`` (only the schema's owner may set it). The plan is
drawn from the seed alone, case ids included (reserved from the table's sequence in report
order), and written by ``jobs`` connections at once, each the cases of its own micro-grids,
in time order. The same seed gives the same cases and events; with more than one job only
the trigger's likely-duplicate flags between neighbouring grids of different jobs may differ.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
import uuid
import zlib
from bisect import bisect_right
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from itertools import accumulate
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import shapely
from sqlalchemy import Engine

from twin.errors import InvalidInput, Problem
from twin.sample.history import Window, _clock_moves, window_after
from twin.sample.spec import SampleSpec
from twin.store.db import libpq_conninfo

DISPATCHER = "dispatcher"
APPROVER = "commander"  # who approves parking a case (the subdistrict's command centre)
_METRES_PER_DEGREE = 111_320
_TX = 40       # actions per transaction
_SYNC = 400    # actions between waits for the server (and progress steps)

# Categories in shares of the cases filed (relative weights): what a Shanghai subdistrict's
# grid centre mostly sees is street order and refuse; building and utility cases are rarer.
_WEIGHTS = {
    "E0102": 14, "C0304": 9, "E0506": 10, "E0507": 8, "E0201": 7, "E9001": 4, "E0104": 5,
    "E0103": 2, "E0501": 6, "E0504": 6, "E0505": 3, "E0511": 3, "E9002": 5, "E9003": 4,
    "C9001": 2, "E0101": 1.5, "E9004": 1, "E9005": 1, "E0205": 1.5, "E0110": 2, "E0406": 1,
    "C0101": 0.7, "C0102": 0.8, "C0118": 2, "C0405": 1.5, "E0106": 2, "E0508": 1.5,
}
_SOURCES = {"worker": 55, "patrol": 20, "hotline": 12, "resident": 6, "leader": 3, "sensor": 4}
_SENSED = {"C0304", "E0406", "E9002", "E9003"}  # bin-level, water-level, camera, smoke sensors
_CALLED_IN = {"E0508", "E9004", "E0505", "E0501", "E0504", "C0118", "E0406", "E0102", "E9005"}
_AT_FEATURE = 0.85  # share of a layer's category placed at one of its features

# How a filed case ends (of those whose steps fit in the period).
_LATE, _REWORK, _PARKED = 0.05, 0.03, 0.01
_LATE_AT_END, _END = 0.15, timedelta(days=21)  # cases filed in the period's last 3 weeks
_UNPARKED = 0.4     # of the parked, taken up again later
_EXTENDED = 0.08    # of the cases with a handling limit of 3 working days or more
_REFUSED = 0.15     # of the extensions asked for
_DUPLICATE, _NOT_FILED = 0.04, 0.02  # reports not filed, on top of the filed

_PARK_REASONS = ("涉及产权纠纷, 需区级部门协调 ownership dispute: needs the district",
                 "需列入年度维修计划 waits for the yearly repair budget",
                 "当事人失联, 暂无法处置 party unreachable for now")
_NOT_FILED_REASONS = ("现场核实无此问题 nothing found on site",
                      "不属于立案范围 outside the filing rules",
                      "属小区内部管理事项, 已转物业 inside an estate: passed to its manager")
_REWORK_REASONS = ("复核未整改到位 not put right on re-inspection",
                   "现场仍有问题, 退回重新处置 still there: sent back")
_HANDLE_NOTES = ("已处置 done", "已整改 put right", "已清理 cleared")
_EXTEND_REASONS = ("需当事人限期整改 the owner was given a deadline",
                   "需协调多部门联合处置 needs a joint operation")
_UNPARK_REASON = "条件具备, 恢复处置 conditions met: taken up again"


# ---------------------------------------------------------------------------------------
# Working time, as twin.add_work and twin.work_between count it

class WorkClock:
    """The twin's working calendar in Python, to plan steps inside working time: the same
    periods, days and rules as twin.add_work (``<n>h`` working hours, ``<n>d`` working days
    from the next day, ending when the last one's working hours end)."""

    def __init__(self, zone: str, periods: Sequence[tuple[clock_time, clock_time]],
                 days: dict[date, bool]) -> None:
        if not periods:
            raise InvalidInput("the working calendar has no working periods", [Problem(
                "work_periods", [], "load the case rules first", "缺少工作时段")])
        self.zone = ZoneInfo(zone)
        self.periods = sorted(periods)
        self.days = days
        self.closing = max(p[1] for p in periods)

    def working(self, d: date) -> bool:
        return self.days.get(d, d.isoweekday() < 6)

    def add(self, t: datetime, limit: str) -> datetime:
        """``t`` plus a limit ``<n>h`` or ``<n>d`` in working time (twin.add_work)."""
        amount = float(limit[:-1])
        if amount == 0:
            return t
        here = t.astimezone(self.zone).replace(tzinfo=None)
        d = here.date()
        if limit.endswith("d"):
            counted = 0
            while True:
                d += timedelta(days=1)
                if self.working(d):
                    counted += 1
                    if counted >= amount:
                        return datetime.combine(d, self.closing, self.zone).astimezone(UTC)
        return self.add_hours(t, amount)

    def add_hours(self, t: datetime, hours: float) -> datetime:
        """``t`` plus ``hours`` of working time."""
        here = t.astimezone(self.zone).replace(tzinfo=None)
        d = here.date()
        remaining = timedelta(hours=hours)
        while True:
            if self.working(d):
                for starts, ends in self.periods:
                    seg_start = max(datetime.combine(d, starts), here)
                    end = datetime.combine(d, ends)
                    if end > seg_start:
                        if end - seg_start >= remaining:
                            return (seg_start + remaining).replace(tzinfo=self.zone
                                                                   ).astimezone(UTC)
                        remaining -= end - seg_start
            d += timedelta(days=1)

    def hours_between(self, a: datetime, b: datetime) -> float:
        """Working hours from ``a`` to ``b`` (twin.work_between)."""
        s = a.astimezone(self.zone).replace(tzinfo=None)
        e = b.astimezone(self.zone).replace(tzinfo=None)
        total = timedelta()
        d = s.date()
        while d <= e.date():
            if self.working(d):
                for starts, ends in self.periods:
                    lo, hi = max(datetime.combine(d, starts), s), min(datetime.combine(d, ends), e)
                    if hi > lo:
                        total += hi - lo
            d += timedelta(days=1)
        return total.total_seconds() / 3600


class _Moments:
    """Draws report moments over the window: hours weighted as people report (working hours
    of working days most, evenings and rest days less, nights hardly; sensors any time)."""

    def __init__(self, window: Window, work: WorkClock) -> None:
        first, last = window.period.working_hours
        hour = window.start.astimezone(UTC)
        starts, weights = [], []
        while hour < window.end:
            local = hour.astimezone(window.period.timezone)
            weight = (1.0 if first <= local.hour < last else
                      0.25 if 7 <= local.hour < 22 else 0.02)
            starts.append(hour.timestamp())
            weights.append(weight * (1.0 if work.working(local.date()) else 0.35))
            hour += timedelta(hours=1)
        self.starts = np.array(starts)
        self.cumulative = list(accumulate(weights))

    def draw(self, rng: Random) -> datetime:
        x = rng.random() * self.cumulative[-1]
        i = bisect_right(self.cumulative, x)
        return datetime.fromtimestamp(float(self.starts[min(i, len(self.starts) - 1)])
                                      + rng.uniform(0, 3600), UTC).replace(microsecond=0)


# ---------------------------------------------------------------------------------------
# What the generator knows of the twin

@dataclass(frozen=True)
class _Category:
    code: str
    name_zh: str
    name_en: str
    handler: str
    department: str
    layer: str | None
    limits: dict[str, str]  # stage -> '<n>h' | '<n>d'


@dataclass(frozen=True)
class _Place:
    xy: tuple[float, float]
    grid: str
    feature: tuple[str, int] | None
    label: str


@dataclass(frozen=True)
class _Twin:
    """The rules, people and places the cases are drawn from."""

    categories: dict[str, _Category]
    work: WorkClock
    grid_shapes: dict[str, Any]
    tree: Any
    codes: list[str]
    squads: dict[str, str | None]  # grid -> squad
    features: dict[str, list[tuple[int, str, Any, str]]]  # layer -> (id, grid, geom, label)
    departments: dict[str, str]    # department -> its user
    leads: dict[str, str]          # squad -> lead

    def grid_of(self, xy: tuple[float, float]) -> str | None:
        """The one grid a point lies in (None on a boundary or outside)."""
        hits = self.tree.query(shapely.Point(xy), predicate="intersects")
        return self.codes[hits[0]] if len(hits) == 1 else None


def _read_twin(conn: psycopg.Connection[Any]) -> _Twin:
    cats = {r[0]: _Category(r[0], r[1], r[2], r[3], r[4], r[5],
                            {"file": r[6], "dispatch": r[7], "handle": r[8], "verify": r[9]})
            for r in conn.execute(
                "SELECT code, name_zh, name_en, handler, department, layer, file_limit, "
                "dispatch_limit, handle_limit, verify_limit FROM twin.case_categories "
                "WHERE active ORDER BY code")}
    if not cats:
        raise InvalidInput("the twin has no case categories: cases need the case rules "
                           "(the spec's [cases] table, loaded with the sample)", [Problem(
                               "case_categories", [], "none loaded", "未加载案件类别")])
    zone = conn.execute("SELECT time_zone FROM twin.case_rules").fetchone()
    periods = [(r[0], r[1]) for r in conn.execute(
        "SELECT starts, ends FROM twin.work_periods ORDER BY starts")]
    days = dict(conn.execute("SELECT day, working FROM twin.calendar_days").fetchall())
    work = WorkClock(zone[0] if zone else "Asia/Shanghai", periods, days)
    grids = conn.execute("SELECT props ->> 'code', props ->> 'squad', ST_AsBinary(geom) "
                         "FROM twin.features WHERE layer = 'micro_grids' ORDER BY 1").fetchall()
    if not grids:
        raise InvalidInput("the twin has no micro-grids to place cases in", [Problem(
            "micro_grids", [], "load the sample first", "缺少微网格")])
    shapes = {code: shapely.from_wkb(wkb) for code, _, wkb in grids}
    layers = sorted({c.layer for c in cats.values() if c.layer})
    features: dict[str, list[tuple[int, str, Any, str]]] = {}
    for fid, layer, grid, wkb, label in conn.execute(
            "SELECT id, layer, grid_code, ST_AsBinary(geom), coalesce(name, props ->> 'address', "
            "props ->> 'name', '') FROM twin.features WHERE layer = ANY(%s) "
            "AND grid_code IS NOT NULL ORDER BY layer, id", (layers,)):
        features.setdefault(layer, []).append((fid, grid, shapely.from_wkb(wkb), label))
    departments = dict(conn.execute(
        "SELECT DISTINCT ON (department) department, name FROM twin.users "
        "WHERE role = 'department' AND active ORDER BY department, name").fetchall())
    leads = dict(conn.execute("SELECT code, lead FROM twin.squads WHERE lead IS NOT NULL"
                              ).fetchall())
    codes = list(shapes)
    return _Twin(cats, work, shapes, shapely.STRtree(list(shapes.values())), codes,
                 {code: squad for code, squad, _ in grids}, features, departments, leads)


# ---------------------------------------------------------------------------------------
# The plan: every case's steps, with their moments

@dataclass(slots=True)
class _Step:
    """One write: a report (INSERT) or a move (UPDATE), by whom, when, with what."""

    at: datetime
    case: int
    kind: str           # report | move | ask | approve | refuse
    actor: str
    role: str
    device: str | None = None
    to: str | None = None
    reason: str | None = None
    department: str | None = None   # the actor's (a department user's)
    photos: tuple[str, ...] = ()
    position: tuple[float, float] | None = None
    accuracy: float | None = None
    approver: str | None = None
    client_time: datetime | None = None
    edit_id: str | None = None
    limit: str | None = None        # an extension asked for
    duplicate_of: int | None = None


@dataclass(slots=True)
class _Case:
    id: int
    category: _Category
    place: _Place
    source: str
    priority: str
    description: str
    order_number: str | None
    steps: list[_Step] = field(default_factory=list)
    open_until: datetime | None = None  # when it leaves the open states (None: stays open)


@dataclass
class CasePlan:
    """What a run writes: the cases with their steps, and how many are filed."""

    cases: list[_Case]
    filed: int

    @property
    def steps(self) -> int:
        return sum(len(c.steps) for c in self.cases)


class _Planner:
    def __init__(self, twin: _Twin, window: Window, rng: Random, photo: str,
                 route: Callable[[str, str], tuple[str | None, str | None]]) -> None:
        self.twin = twin
        self.window = window
        self.work = twin.work
        self.rng = rng
        self.photo = photo
        self.route = route
        self.moments = _Moments(window, twin.work)
        codes = list(_WEIGHTS) + [c for c in twin.categories if c not in _WEIGHTS]
        self.cat_codes = [c for c in codes if c in twin.categories]
        self.cat_weights = list(accumulate(_WEIGHTS.get(c, 1.0) for c in self.cat_codes))
        self.fixed: dict[int, tuple[float, float] | None] = {}
        # some places see far more cases than others
        self.feature_weights = {
            layer: list(accumulate(rng.gammavariate(1.5, 1.0) for _ in rows))
            for layer, rows in twin.features.items()}

    # -- where, what, who reported it

    def place(self, cat: _Category) -> _Place:
        rng, twin = self.rng, self.twin
        rows = twin.features.get(cat.layer or "", [])
        if rows and rng.random() < _AT_FEATURE:
            for _ in range(20):
                fid, grid, geom, label = rng.choices(
                    rows, cum_weights=self.feature_weights[cat.layer or ""])[0]
                fixed = geom.geom_type not in ("LineString", "MultiLineString")
                if fixed and fid in self.fixed:  # a point's or a building's place: known
                    known = self.fixed[fid]
                else:
                    point = _point_on(geom, rng)
                    known = (round(point.x, 7), round(point.y, 7))
                    if twin.grid_of(known) != grid:  # on a boundary: the trigger could differ
                        known = None
                    if fixed:
                        self.fixed[fid] = known
                if known is not None:
                    return _Place(known, grid, (cat.layer or "", fid), label)
        while True:
            grid = rng.choice(twin.codes)
            minx, miny, maxx, maxy = twin.grid_shapes[grid].bounds
            for _ in range(30):
                xy = (round(rng.uniform(minx, maxx), 7), round(rng.uniform(miny, maxy), 7))
                if twin.grid_of(xy) == grid:
                    return _Place(xy, grid, None, "")

    def source(self, cat: _Category) -> str:
        weights: dict[str, float] = dict(_SOURCES)
        if cat.code not in _SENSED:
            weights["sensor"] = 0
        if cat.code in _CALLED_IN:
            weights["hotline"] *= 2.5
            weights["resident"] *= 2
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def reporter(self, case: _Case, at: datetime) -> _Step:
        rng = self.rng
        if case.source == "worker":
            grid = case.place.grid
            lag = timedelta(seconds=rng.uniform(0.5, 5) if rng.random() < 0.8
                            else rng.uniform(60, 1800))
            return _Step(at, case.id, "report", f"worker-{grid}", "worker", f"tablet-{grid}",
                         photos=(self.photo,), client_time=at - lag,
                         edit_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        device = f"sensor-{case.place.grid}" if case.source == "sensor" else "pc-dispatcher"
        return _Step(at, case.id, "report", DISPATCHER, DISPATCHER, device,
                     photos=(self.photo,) if case.source in ("patrol", "leader") else ())

    # -- when

    def after(self, t: datetime, limit: str, lo: float, hi: float) -> datetime:
        """A moment ``lo`` to ``hi`` of the way through a stage of ``limit`` started at ``t``
        (in working time), at least a minute after ``t``."""
        hours = (float(limit[:-1]) if limit.endswith("h")
                 else self.work.hours_between(t, self.work.add(t, limit)))
        moment = self.work.add_hours(t, max(hours * self.rng.uniform(lo, hi), 1 / 60))
        return moment.replace(microsecond=0) + timedelta(seconds=1)

    def near(self, xy: tuple[float, float]) -> tuple[float, float]:
        """Where a verifier stands: a few metres to 30 m from the case."""
        metres, angle = self.rng.uniform(2, 30), self.rng.uniform(0, 2 * math.pi)
        return (round(xy[0] + metres * math.sin(angle) / (_METRES_PER_DEGREE * math.cos(
            math.radians(xy[1]))), 7), round(xy[1] + metres * math.cos(angle)
                                             / _METRES_PER_DEGREE, 7))

    # -- one case

    def new_case(self, case_id: int, cat: _Category, place: _Place | None = None,
                 source: str | None = None) -> _Case:
        rng = self.rng
        place = place or self.place(cat)
        source = source or self.source(cat)
        urgent = cat.limits["file"] == "0.1h" or rng.random() < 0.05
        where = f" ({place.label})" if place.label else ""
        return _Case(case_id, cat, place, source, "urgent" if urgent else "normal",
                     f"{cat.name_zh}{where} {cat.name_en}", None)

    def filed_case(self, case_id: int) -> _Case:
        """A report that is filed within the window, and its loop as far as the window."""
        rng, work = self.rng, self.work
        cat = self.twin.categories[rng.choices(self.cat_codes, cum_weights=self.cat_weights)[0]]
        case = self.new_case(case_id, cat)
        while True:
            reported = self.moments.draw(rng)
            filed = self.after(reported, cat.limits["file"], 0.05, 0.9)
            if filed < self.window.end:
                break
        steps = case.steps
        steps.append(self.reporter(case, reported))
        steps.append(_Step(filed, case_id, "move", DISPATCHER, DISPATCHER, "pc-dispatcher",
                           to="filed"))
        dispatch_limit, handle_limit = cat.limits["dispatch"], cat.limits["handle"]
        case_due = work.add(work.add(work.add(filed, dispatch_limit), handle_limit),
                            cat.limits["verify"])
        assignee, _department = self.route(cat.code, case.place.grid)
        handler, handler_role = ((assignee, "worker") if assignee else
                                 (self.twin.departments.get(cat.department, DISPATCHER),
                                  "department" if cat.department in self.twin.departments
                                  else DISPATCHER))
        handler_dept = cat.department if handler_role == "department" else None
        handler_device = (f"tablet-{case.place.grid}" if handler.startswith("worker-")
                          else f"tablet-{handler}" if handler_role == "worker" else f"pc-{handler}")
        r = rng.random()
        if r < _PARKED:
            parked = self.after(filed, dispatch_limit, 0.1, 0.9)
            steps.append(_Step(parked, case_id, "move", DISPATCHER, DISPATCHER, "pc-dispatcher",
                               to="parked", reason=rng.choice(_PARK_REASONS),
                               approver=APPROVER))
            if rng.random() >= _UNPARKED:
                return case
            dispatched = self.after(parked, f"{rng.randint(5, 30)}d", 0.2, 0.9)
            steps.append(_Step(dispatched, case_id, "move", DISPATCHER, DISPATCHER,
                               "pc-dispatcher", to="dispatched", reason=_UNPARK_REASON))
            late = False
        else:
            dispatched = self.after(filed, dispatch_limit, 0.05, 0.8)
            steps.append(_Step(dispatched, case_id, "move", DISPATCHER, DISPATCHER,
                               "pc-dispatcher", to="dispatched"))
            # the period's last weeks leave a backlog: more of their cases run late
            late = r < _PARKED + (_LATE_AT_END if self.window.end - filed < _END
                                  else _LATE)
        stage_due = work.add(dispatched, handle_limit)
        t = dispatched
        limit_days = float(handle_limit[:-1]) if handle_limit.endswith("d") else 0
        if limit_days >= 3 and not late and rng.random() < _EXTENDED:
            asked = self.after(t, handle_limit, 0.5, 0.8)
            more = f"{max(1, round(limit_days / 4))}d"
            steps.append(_Step(asked, case_id, "ask", handler, handler_role, handler_device,
                               reason=rng.choice(_EXTEND_REASONS), department=handler_dept,
                               limit=more))
            decided = self.after(asked, "2h", 0.1, 0.9)
            if rng.random() < _REFUSED:
                steps.append(_Step(decided, case_id, "refuse", DISPATCHER, DISPATCHER,
                                   "pc-dispatcher", reason="不予延期 refused"))
            else:
                steps.append(_Step(decided, case_id, "approve", DISPATCHER, DISPATCHER,
                                   "pc-dispatcher", reason="同意延期 approved"))
                stage_due = work.add(stage_due, more)
            t = decided
        rounds = 2 if rng.random() < _REWORK / (1 - _PARKED) else 1
        for n in range(rounds):
            if late and n == rounds - 1:  # past the case's deadline, by up to a stage more
                hours = max(0.5, work.hours_between(dispatched, stage_due))
                handled = work.add_hours(max(case_due, t), hours * rng.uniform(0.1, 1.0)
                                         ).replace(microsecond=0) + timedelta(seconds=1)
            else:
                left = work.hours_between(t, stage_due)
                handled = work.add_hours(t, max(left * rng.uniform(0.1, 0.9), 1 / 60)
                                         ).replace(microsecond=0) + timedelta(seconds=1)
            steps.append(_Step(handled, case_id, "move", handler, handler_role, handler_device,
                               to="handled", reason=rng.choice(_HANDLE_NOTES),
                               department=handler_dept, photos=(self.photo,)))
            checked = self.after(handled, cat.limits["verify"], 0.05, 0.9)
            verifier, role = self.verifier(case, handler)
            device = "pc-dispatcher" if role == DISPATCHER else f"tablet-{case.place.grid}"
            failed = n < rounds - 1  # a failed check sends it back (返工)
            steps.append(_Step(checked, case_id, "move", verifier, role, device,
                               to="dispatched" if failed else "closed",
                               reason=rng.choice(_REWORK_REASONS) if failed
                               else "核查通过, 结案 verified: closed",
                               photos=(self.photo,), position=self.near(case.place.xy),
                               accuracy=round(rng.uniform(3, 15), 1)))
            if failed:
                t = checked
                stage_due = work.add(checked, handle_limit)
        return case

    def verifier(self, case: _Case, handler: str) -> tuple[str, str]:
        lead = self.twin.leads.get(self.twin.squads.get(case.place.grid) or "")
        if lead and lead != handler and self.rng.random() < 0.3:
            return lead, "worker"
        return DISPATCHER, DISPATCHER

    def unfiled(self, case_id: int, original: _Case | None) -> _Case:
        """A report the dispatcher voids as a duplicate of ``original``, or does not file."""
        rng = self.rng
        if original is not None:
            first = original.steps[0].at
            until = original.open_until or self.window.end
            span = (until - first).total_seconds()
            at = first + timedelta(seconds=rng.uniform(0.1, 0.6) * span)
            case = self.new_case(case_id, original.category, original.place,
                                 rng.choice(("worker", "hotline", "resident")))
            report = self.reporter(case, at.replace(microsecond=0))
            voided = self.after(report.at, original.category.limits["file"], 0.1, 0.9)
            case.steps += [report, _Step(voided, case_id, "move", DISPATCHER, DISPATCHER,
                                         "pc-dispatcher", to="void", duplicate_of=original.id,
                                         reason="重复上报 duplicate")]
            return case
        cat = self.twin.categories[rng.choices(self.cat_codes, cum_weights=self.cat_weights)[0]]
        case = self.new_case(case_id, cat)
        while True:
            report = self.reporter(case, self.moments.draw(rng))
            ended = self.after(report.at, cat.limits["file"], 0.1, 0.9)
            if ended < self.window.end:
                break
        case.steps += [report, _Step(ended, case_id, "move", DISPATCHER, DISPATCHER,
                                     "pc-dispatcher", to="not_filed",
                                     reason=rng.choice(_NOT_FILED_REASONS))]
        return case


def _point_on(geom: Any, rng: Random) -> Any:
    """A point of a feature: the point itself, somewhere along a line, inside a polygon."""
    if geom.geom_type == "Point":
        return geom
    if geom.geom_type in ("LineString", "MultiLineString"):
        return geom.interpolate(rng.uniform(0.05, 0.95), normalized=True)
    return geom.point_on_surface()


def plan_cases(twin: _Twin, window: Window, n_filed: int, seed: int, photo: str,
               route: Callable[[str, str], tuple[str | None, str | None]],
               ids: Callable[[int], list[int]]) -> CasePlan:
    """Every case and its steps, from ``seed``: ``n_filed`` filed and the unfiled on top,
    numbered by ``ids(n)`` in the order they are reported."""
    rng = Random(f"cases {seed}")  # noqa: S311 -- reproducible, not secret
    planner = _Planner(twin, window, rng, photo, route)
    drafts = [planner.filed_case(i) for i in range(n_filed)]
    for case in drafts:
        case.steps = [s for s in case.steps if s.at < window.end]
        case.open_until = next((s.at for s in case.steps
                                if s.to in ("closed", "parked", "void", "not_filed")), None)
    n_dup, n_not = round(n_filed * _DUPLICATE), round(n_filed * _NOT_FILED)
    openable = [c for c in drafts if len(c.steps) >= 3]
    extra = [planner.unfiled(n_filed + i, rng.choice(openable) if openable else None)
             for i in range(n_dup)]
    extra += [planner.unfiled(n_filed + n_dup + i, None) for i in range(n_not)]
    for case in extra:
        case.steps = [s for s in case.steps if s.at < window.end]
    everything = [c for c in drafts + extra if c.steps]
    everything.sort(key=lambda c: (c.steps[0].at, c.id))
    numbers = ids(len(everything))
    renumber = {c.id: numbers[i] for i, c in enumerate(everything)}
    for case in everything:
        case.id = renumber[case.id]
        if case.source == "hotline":  # the city's 12345 work order it came in as
            case.order_number = f"12345-{case.id:09d}"
        for step in case.steps:
            step.case = case.id
            if step.duplicate_of is not None:
                step.duplicate_of = renumber[step.duplicate_of]
                step.reason = f"重复上报 duplicate of case {step.duplicate_of}"
        # never two steps of a case at the same second
        for before, after in zip(case.steps, case.steps[1:], strict=False):
            if after.at <= before.at:
                after.at = before.at + timedelta(seconds=1)
    return CasePlan(everything, n_filed)


# ---------------------------------------------------------------------------------------
# Writing

_CONTEXT = (
    "SELECT set_config('twin.clock', %s, true), twin.set_context(%s, %s, %s, %s, %s, %s), "
    "set_config('twin.department', coalesce(%s, ''), true), "
    "set_config('twin.case_photos', %s, true), "
    "set_config('twin.case_position', coalesce(%s, ''), true), "
    "set_config('twin.case_accuracy', coalesce(%s, ''), true), "
    "set_config('twin.case_approver', coalesce(%s, ''), true)")
_REPORT = """
    INSERT INTO twin.cases (id, geom, category, source, priority, description, photos,
                            feature_layer, feature_id, order_number)
    VALUES (%s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s, %s, %s, %s, %s, %s, %s)"""
_MOVE = ("UPDATE twin.cases SET state = %s, duplicate_of = coalesce(%s, duplicate_of) "
         "WHERE id = %s")
_ASK = "UPDATE twin.cases SET extension = %s WHERE id = %s"
_APPROVE = "UPDATE twin.cases SET extended = extended || extension, extension = NULL WHERE id = %s"
_REFUSE = "UPDATE twin.cases SET extension = NULL WHERE id = %s"


def _send(cur: psycopg.Cursor[Any], step: _Step, case: _Case) -> None:
    pos = (f"SRID=4326;POINT({step.position[0]} {step.position[1]})"
           if step.position else None)
    cur.execute(_CONTEXT, (step.at.isoformat(), step.actor, step.role, step.device, step.reason,
                           step.client_time, step.edit_id, step.department,
                           "{" + ",".join(step.photos) + "}", pos,
                           None if step.accuracy is None else str(step.accuracy),
                           step.approver))
    if step.kind == "report":
        p = case.place
        cur.execute(_REPORT, (case.id, p.xy[0], p.xy[1], case.category.code, case.source,
                              case.priority, case.description, list(step.photos),
                              p.feature[0] if p.feature else None,
                              p.feature[1] if p.feature else None, case.order_number))
    elif step.kind == "move":
        cur.execute(_MOVE, (step.to, step.duplicate_of, case.id))
    elif step.kind == "ask":
        cur.execute(_ASK, (step.limit, case.id))
    elif step.kind == "approve":
        cur.execute(_APPROVE, (case.id,))
    else:
        cur.execute(_REFUSE, (case.id,))


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=0)
    conn.execute("SET synchronous_commit = off")  # a crash loses generated steps, never order
    return conn


def _write(conninfo: str, steps: Sequence[tuple[_Step, _Case]],
           advance: Callable[[int], None]) -> None:
    """The steps in order through one pipeline, ``_TX`` to a transaction: the server works
    through them while the next are sent, instead of waiting for a round trip each."""
    with _connect(conninfo) as conn, conn.pipeline() as pipeline, conn.cursor() as cur:
        queued = 0
        for i in range(0, len(steps), _TX):
            batch = steps[i:i + _TX]
            cur.execute("BEGIN")
            for step, case in batch:
                _send(cur, step, case)
            cur.execute("COMMIT")
            queued += len(batch)
            if queued >= _SYNC:
                pipeline.sync()  # waits for the server to catch up; errors surface here
                advance(queued)
                queued = 0
        pipeline.sync()
        advance(queued)


@dataclass(frozen=True)
class CaseRun:
    """What a run wrote: cases reported and filed, events logged, and the wall time."""

    reported: int
    filed: int
    events: int
    seconds: float


def photo_png() -> bytes:
    """A small grey PNG: the verification photo every generated case refers to."""
    width = height = 16
    raw = b"".join(b"\x00" + bytes([128 + (x ^ y) % 64 for x in range(width)])
                   for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _store_photo(conn: psycopg.Connection[Any], at: datetime) -> str:
    content = photo_png()
    digest = hashlib.sha256(content).hexdigest()
    conn.execute("INSERT INTO twin.photos (sha256, media_type, bytes, content, uploaded_by, "
                 "uploaded_at) VALUES (%s, 'image/png', %s, %s, %s, %s) "
                 "ON CONFLICT (sha256) DO NOTHING", (digest, len(content), content, DISPATCHER,
                                                     at))
    return digest


def _routes(conn: psycopg.Connection[Any], pairs: set[tuple[str, str]], squads: dict[str, str |
            None]) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """Where filing will send each (category, grid): the database's own proposal."""
    ordered = sorted(pairs)
    rows = conn.execute(
        "SELECT u.c, u.g, r.assignee, r.department FROM unnest(%s::text[], %s::text[], "
        "%s::text[]) AS u(c, g, s), LATERAL twin.case_route(u.c, u.g, u.s) r",
        ([c for c, _ in ordered], [g for _, g in ordered], [squads.get(g) for _, g in ordered]))
    return {(c, g): (a, d) for c, g, a, d in rows}


def cases_window(engine: Engine, spec: SampleSpec) -> Window:
    """The spec's ``[history]`` period, moved to begin the day after the twin's newest case
    event when that is later (a case's time only moves forward). Refused unless ``engine``
    may stamp the past."""
    return window_after(engine, spec, "SELECT max(server_time) FROM twin.case_events",
                        "generated cases")


def may_stamp(engine: Engine) -> bool:
    """Whether ``engine`` may write generated cases (set twin.clock)."""
    with engine.connect() as conn:
        return _clock_moves(conn)


def _shares(plan: CasePlan, jobs: int) -> list[list[tuple[_Step, _Case]]]:
    """The steps split by micro-grid (dealt round in code order) into ``jobs`` shares, each
    in time order: no two connections touch the same case, and a duplicate is in its
    original's grid."""
    grids = sorted({c.place.grid for c in plan.cases})
    k = max(1, min(jobs, len(grids)))
    share_of = {g: i % k for i, g in enumerate(grids)}
    shares: list[list[tuple[_Step, _Case]]] = [[] for _ in range(k)]
    for case in plan.cases:
        shares[share_of[case.place.grid]].extend((s, case) for s in case.steps)
    for share in shares:
        share.sort(key=lambda sc: (sc[0].at, sc[0].case))
    return shares


def write_cases(url: str, n_filed: int, seed: int, window: Window,
                progress: Callable[[int], Callable[[int], None]] | None = None,
                jobs: int = 1) -> CaseRun:
    """File ``n_filed`` generated cases (and the reports not filed on top) in the twin at
    ``url`` (the schema owner's) over ``window``, by ``jobs`` connections at once.
    ``progress(total)`` returns a callback advanced (from this thread) as steps commit."""
    started = time.perf_counter()
    conninfo = libpq_conninfo(url)
    with _connect(conninfo) as conn:
        twin = _read_twin(conn)
        before = conn.execute("SELECT coalesce(max(id), 0) FROM twin.case_events").fetchone()
        photo = _store_photo(conn, window.start)
        pairs = {(code, grid) for code in twin.categories for grid in twin.codes}
        routes = _routes(conn, pairs, twin.squads) if pairs else {}

        def ids(n: int) -> list[int]:
            return [r[0] for r in conn.execute(
                "SELECT nextval(pg_get_serial_sequence('twin.cases', 'id')) "
                "FROM generate_series(1, %s) ORDER BY 1", (n,))]

        plan = plan_cases(twin, window, n_filed, seed, photo,
                          lambda c, g: routes.get((c, g), (None, None)), ids)
        advance = progress(plan.steps) if progress else (lambda _: None)
        shares = [s for s in _shares(plan, jobs) if s]
        if len(shares) == 1:
            _write(conninfo, shares[0], advance)
        elif shares:
            _write_shares(conninfo, shares, advance)
        row = conn.execute("SELECT count(*), count(DISTINCT case_id) FILTER (WHERE action = "
                           "'report'), count(*) FILTER (WHERE to_state = 'filed' AND "
                           "from_state = 'reported') FROM twin.case_events WHERE id > %s",
                           (before[0] if before else 0,)).fetchone()
    assert row is not None
    return CaseRun(row[1], row[2], row[0], time.perf_counter() - started)


def _write_shares(conninfo: str, shares: Sequence[Sequence[tuple[_Step, _Case]]],
                  advance: Callable[[int], None]) -> None:
    """Each share on its own connection and thread; progress is reported from here."""
    import queue

    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    with ThreadPoolExecutor(len(shares)) as pool:
        futures = [pool.submit(_write, conninfo, share, done.put) for share in shares]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
            while not done.empty():
                advance(done.get())
        while not done.empty():
            advance(done.get())
        for f in futures:
            f.result()

