"""A generated change history: ``twin sample --history N`` appends N edits to the twin.

The change feed, "as of" queries, per-grid KPIs and their benchmarks need a twin with a
past. The only faithful way to make one is to edit the twin as its users do, so every change
here is a real UPDATE, INSERT or DELETE of ``twin.features``: the triggers number versions
and write the log exactly as they do for the API. What is generated:

- transactions of one actor editing at one moment for one reason: mostly the grid worker of
  a micro-grid (``worker-<grid>``, on ``tablet-<grid>``) editing features of that grid, some
  commanders, planners and admins anywhere;
- per layer, the edits its users make (``KINDS``): state changes, re-counted numbers, tags
  added and removed, points moved a few metres within their grid, points removed, brought
  back with the same id (the trigger continues their numbering) and added;
- moments over the spec's ``[history]`` period, mostly in working hours, stamped through
  ``twin.clock`` (only the owner of schema ``twin`` may move it); tablets report a device
  time a little behind the server, offline ones minutes behind.

Micro-grids and residential areas are never edited: that would reassign their features.

PostgreSQL's triggers do most of the work, one backend per connection, so several
connections (``jobs``) write shares of the history at once, each in its own micro-grids (see
``_shares``). With one, the same seed, N and starting twin give the same changes, feature ids
included; with more, each share's changes are the same, but the ids of added features and the
order of the log depend on how the shares' transactions interleave.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate, takewhile
from random import Random
from typing import Any, ClassVar

import numpy as np
import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, create_engine, text

from twin.errors import Forbidden, InvalidInput, Problem
from twin.registry import all_layers
from twin.sample.spec import HistorySpec, SampleSpec
from twin.store.db import libpq_conninfo

WORKER, COMMANDER, PLANNER, ADMIN = "worker", "commander", "planner", "admin"
# Who edits: grid workers do most of it; shares of the roles present in twin.users.
_ROLE_SHARE = {WORKER: 0.88, COMMANDER: 0.05, PLANNER: 0.04, ADMIN: 0.03}

_BATCH = 250                  # transactions between waits for the server (and bar steps)
_ATTEMPTS = 200               # draws of actor and kind before deciding nothing can be edited
_METRES_PER_DEGREE = 111_320  # of latitude: near enough for moves of a few metres
Point = tuple[float, float]


# ---------------------------------------------------------------------------------------
# What the generator knows of the twin

@dataclass(slots=True)
class _Feature:
    """A feature as last written: enough to make its next edit valid. Lines and polygons
    have no ``xy``: they are never moved."""

    id: int
    layer: str
    grid: str | None
    props: dict[str, Any]
    tags: tuple[str, ...]
    xy: Point | None
    alive: bool = True


@dataclass(frozen=True, slots=True)
class _Edit:
    """A feature's state after one edit."""

    feature: _Feature
    props: dict[str, Any]
    tags: tuple[str, ...]
    xy: Point | None
    alive: bool = True

    def changes_something(self) -> bool:
        """An edit that changes nothing leaves no change record (the trigger skips it), so
        it must not be counted as one."""
        f = self.feature
        return (self.props, self.tags, self.xy, self.alive) != (f.props, f.tags, f.xy, f.alive)


class _Grids:
    """The micro-grids' shapes, read once and shared (read-only) by every share's world: a
    point must land in its grid and no other, whichever share moves it."""

    def __init__(self, grids: Mapping[str, Any]) -> None:
        self.codes = list(grids)
        self.tree = shapely.STRtree(list(grids.values()))
        self.shapes = dict(grids)

    def inside(self, grid: str, xy: Point) -> bool:
        """Whether a point lies in this grid and no other, so the trigger derives this grid."""
        hits = self.tree.query(shapely.Point(xy), predicate="intersects")
        return len(hits) == 1 and self.codes[hits[0]] == grid


class _World:
    """The twin (or one share of it) while a history is planned: features by micro-grid and
    layer, the grids' shapes (to keep points in their grid), and new ids from the twin's own
    sequence."""

    def __init__(self, rng: Random, features: Sequence[_Feature], grids: _Grids,
                 new_id: Callable[[], int]) -> None:
        self.rng = rng
        self.new_id = new_id
        self.grids = grids
        self.features: dict[str | None, dict[str, list[_Feature]]] = {}
        for f in features:
            self.features.setdefault(f.grid, {}).setdefault(f.layer, []).append(f)

    def point_in(self, grid: str) -> Point | None:
        """A random point of the grid (rounded as the sample's are), or None for a sliver."""
        minx, miny, maxx, maxy = self.grids.shapes[grid].bounds
        for _ in range(50):
            xy = (round(self.rng.uniform(minx, maxx), 7), round(self.rng.uniform(miny, maxy), 7))
            if self.grids.inside(grid, xy):
                return xy
        return None

    def moved(self, xy: Point, metres: float) -> Point:
        """``xy`` moved ``metres`` in a random direction."""
        angle = self.rng.uniform(0, 2 * math.pi)
        north = metres * math.cos(angle) / _METRES_PER_DEGREE
        east = metres * math.sin(angle) / (_METRES_PER_DEGREE * math.cos(math.radians(xy[1])))
        return round(xy[0] + east, 7), round(xy[1] + north, 7)

    def apply(self, kind: Kind, edits: Sequence[_Edit]) -> None:
        """Remember the edits, so that later ones start from them."""
        for e in edits:
            f = e.feature
            if kind.op == "create":
                self.features.setdefault(f.grid, {}).setdefault(f.layer, []).append(f)
            f.props, f.tags, f.xy, f.alive = e.props, e.tags, e.xy, e.alive


# ---------------------------------------------------------------------------------------
# Kinds of edit

def _tagged(tags: tuple[str, ...], pattern: str) -> bool:
    """Whether ``tags`` hold ``pattern``; a pattern ``key=`` matches any value of the key."""
    if pattern.endswith("="):
        return any(t.startswith(pattern) for t in tags)
    return pattern in tags


def _valid(layer: str, props: dict[str, Any]) -> bool:
    """Whether the layer's attribute model accepts ``props``: bounds come from the model."""
    try:
        all_layers()[layer].attributes.model_validate(props)
    except ValidationError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class Kind:
    """One kind of edit of one layer: who makes it and why, how often (``weight``, relative
    to the other kinds of the same role), at most how many features one transaction edits,
    and which features it applies to: ``when`` attribute values, tags it ``has`` or
    ``lacks`` (``key=`` stands for any value of the key)."""

    op: ClassVar[str] = "attrs"  # the statement that writes it (_SQL)

    layer: str
    reason: str
    roles: tuple[str, ...]
    weight: float
    most: int = 1
    when: Mapping[str, Any] = field(default_factory=dict)
    has: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()

    def applies(self, f: _Feature) -> bool:
        return (f.alive and all(f.props.get(k) == v for k, v in self.when.items())
                and all(_tagged(f.tags, t) for t in self.has)
                and not any(_tagged(f.tags, t) for t in self.lacks))

    def edits(self, world: _World, grid: str | None, features: Sequence[_Feature],
              k: int) -> list[_Edit]:
        """Up to ``k`` edits of the grid's features of the layer that the kind applies to."""
        fits = [f for f in features if self.applies(f)]
        chosen = world.rng.sample(fits, min(k, len(fits)))
        edits = (self.edit(world, f) for f in chosen)
        return [e for e in edits if e is not None and e.changes_something()]

    def edit(self, world: _World, f: _Feature) -> _Edit | None:
        """The feature after this edit, or None when no valid edit of this kind fits it."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Transition(Kind):
    """Set attributes (``to``), add and remove tags: a state change, a tag, a flag."""

    to: Mapping[str, Any] = field(default_factory=dict)
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def edit(self, world: _World, f: _Feature) -> _Edit:
        kept = tuple(t for t in f.tags if t not in self.remove)
        return _Edit(f, {**f.props, **self.to}, kept + tuple(t for t in self.add if t not in kept),
                     f.xy)


@dataclass(frozen=True, kw_only=True)
class Nudge(Kind):
    """A number re-counted or re-measured: one of ``steps`` added, within the model's bounds."""

    attribute: str
    steps: tuple[float, ...]

    def edit(self, world: _World, f: _Feature) -> _Edit | None:
        for step in world.rng.sample(self.steps, len(self.steps)):
            props = {**f.props, self.attribute: round(f.props[self.attribute] + step, 2)}
            if _valid(self.layer, props):
                return _Edit(f, props, f.tags, f.xy)
        return None


@dataclass(frozen=True, kw_only=True)
class Move(Kind):
    """A point put right by a few metres, staying in its micro-grid."""

    op: ClassVar[str] = "move"
    metres: tuple[float, float] = (1.0, 6.0)

    def edit(self, world: _World, f: _Feature) -> _Edit | None:
        if f.xy is None or f.grid is None:
            return None
        for _ in range(5):
            xy = world.moved(f.xy, world.rng.uniform(*self.metres))
            if world.grids.inside(f.grid, xy):
                return _Edit(f, f.props, f.tags, xy)
        return None


@dataclass(frozen=True, kw_only=True)
class Delete(Kind):
    """A feature removed; it stays in the history and may be brought back."""

    op: ClassVar[str] = "delete"

    def edit(self, world: _World, f: _Feature) -> _Edit:
        return _Edit(f, f.props, f.tags, f.xy, alive=False)


@dataclass(frozen=True, kw_only=True)
class Restore(Kind):
    """A feature removed earlier in this history brought back as it was, with its own id."""

    op: ClassVar[str] = "restore"

    def applies(self, f: _Feature) -> bool:
        return not f.alive

    def edit(self, world: _World, f: _Feature) -> _Edit:
        return _Edit(f, f.props, f.tags, f.xy)


@dataclass(frozen=True, kw_only=True)
class Create(Kind):
    """A new point at a random place of the editor's micro-grid, which holds fewer than
    ``up_to`` of the layer's (workers only): new sites go where there are few."""

    op: ClassVar[str] = "create"
    props: Mapping[str, Any]
    tags: tuple[str, ...]
    up_to: int

    def edits(self, world: _World, grid: str | None, features: Sequence[_Feature],
              k: int) -> list[_Edit]:
        room = self.up_to - sum(f.alive for f in features)
        points = [world.point_in(grid) for _ in range(min(k, room))] if grid is not None else []
        return [_Edit(_Feature(world.new_id(), self.layer, grid, {}, (), None, alive=False),
                      dict(self.props), self.tags, xy) for xy in points if xy is not None]


def _blocked(blocker: str, english: str, weight: float) -> Transition:
    return Transition(layer="fire_passages", reason=f"巡查发现{blocker}堵塞 inspection found it "
                      f"blocked by {english}", roles=(WORKER, COMMANDER), weight=weight,
                      when={"state": "open"}, to={"state": "blocked", "blocked_by": blocker},
                      add=("condition=占用",))


# Every value must be one the layer's model and tag vocabulary accept (tests check them all).
KINDS: tuple[Kind, ...] = (
    # waste drop points: bins fill and are emptied every day; some break, move or go
    Transition(layer="waste_points", reason="满溢待清运 bins overflowing", roles=(WORKER,),
               weight=20, most=3, when={"state": "ok"}, to={"state": "full"}),
    Transition(layer="waste_points", reason="已清运 emptied", roles=(WORKER,), weight=20, most=3,
               when={"state": "full"}, to={"state": "ok"}),
    Transition(layer="waste_points", reason="桶体破损 bin damaged", roles=(WORKER,), weight=2,
               when={"state": "ok"}, to={"state": "damaged"}, add=("condition=破损",)),
    Transition(layer="waste_points", reason="已维修 repaired", roles=(WORKER,), weight=2,
               when={"state": "damaged"}, to={"state": "ok"}, remove=("condition=破损",)),
    Transition(layer="waste_points", reason="施工临时关闭 closed during works", roles=(WORKER,),
               weight=0.5, when={"state": "ok"}, to={"state": "closed"}),
    Transition(layer="waste_points", reason="恢复开放 reopened", roles=(WORKER,), weight=0.5,
               when={"state": "closed"}, to={"state": "ok"}),
    Transition(layer="waste_points", reason="增设误时投放 opened for off-hour drops",
               roles=(WORKER,), weight=0.3, when={"off_hour": False}, to={"off_hour": True}),
    Transition(layer="waste_points", reason="取消误时投放 off-hour drops ended", roles=(WORKER,),
               weight=0.3, when={"off_hour": True}, to={"off_hour": False}),
    Transition(layer="waste_points", reason="完成微更新 micro-renewal done", roles=(WORKER,),
               weight=0.5, lacks=("微更新",), add=("微更新",)),
    Nudge(layer="waste_points", reason="调整桶数 bins adjusted", roles=(WORKER,), weight=2,
          attribute="bins", steps=(-1, 1, 2)),
    Move(layer="waste_points", reason="位置校正 position corrected", roles=(WORKER, ADMIN),
         weight=1.5),
    Delete(layer="waste_points", reason="撤点 drop point removed", roles=(WORKER,), weight=0.3),
    Restore(layer="waste_points", reason="恢复投放点 drop point restored", roles=(WORKER, ADMIN),
            weight=5),  # points removed during works come back soon
    Create(layer="waste_points", reason="新增投放点 new drop point", roles=(WORKER,), weight=0.2,
           props={"state": "ok", "bins": 4, "off_hour": False}, tags=("class=市容环境",),
           up_to=2),
    # e-bike charging points: hazards found and remediated; street sites come and go
    Transition(layer="charging_points", reason="发现飞线充电隐患 hazard: flying leads",
               roles=(WORKER, COMMANDER), weight=4, when={"state": "safe"},
               to={"state": "hazard"}, add=("condition=破损",)),
    Transition(layer="charging_points", reason="隐患已整改 hazard remediated", roles=(WORKER,),
               weight=4, when={"state": "hazard"}, to={"state": "safe", "remediated": True},
               remove=("condition=破损",)),
    Transition(layer="charging_points", reason="停用整改 shut down until remediated",
               roles=(COMMANDER,), weight=2, when={"state": "hazard"},
               to={"state": "out_of_service"}),
    Transition(layer="charging_points", reason="设备检修停用 out of service for repair",
               roles=(WORKER,), weight=1, when={"state": "safe"},
               to={"state": "out_of_service"}),
    Transition(layer="charging_points", reason="恢复使用 back in service", roles=(WORKER,),
               weight=1.5, when={"state": "out_of_service"}, to={"state": "safe"},
               remove=("condition=破损",)),
    Nudge(layer="charging_points", reason="调整插座数 sockets changed", roles=(WORKER,),
          weight=1, attribute="sockets", steps=(-2, -1, 1, 2, 4)),
    Move(layer="charging_points", reason="位置校正 position corrected", roles=(WORKER, ADMIN),
         weight=0.5, has=("新建",)),
    Delete(layer="charging_points", reason="拆除充电桩 charging pile removed", roles=(WORKER,),
           weight=0.1, has=("新建",)),
    Restore(layer="charging_points", reason="恢复充电桩 charging pile restored",
            roles=(WORKER, ADMIN), weight=2),
    Create(layer="charging_points", reason="新增充电桩 new charging pile", roles=(WORKER,),
           weight=0.2, props={"site_type": "street_pile", "sockets": 10, "state": "safe",
                              "remediated": False}, tags=("class=公用设施", "新建"), up_to=1),
    # fire lanes: blocked and cleared, widths re-measured
    _blocked("堆物", "piled goods", 3),
    _blocked("违停车辆", "a parked car", 3),
    _blocked("地锁", "a parking lock", 1.5),
    _blocked("违章搭建", "an illegal structure", 0.5),
    Transition(layer="fire_passages", reason="已清障 cleared", roles=(WORKER,), weight=8, most=2,
               when={"state": "blocked"}, to={"state": "open", "blocked_by": None},
               remove=("condition=占用",)),
    Nudge(layer="fire_passages", reason="复测宽度 width re-measured", roles=(WORKER,), weight=1,
          attribute="width_m", steps=(-0.5, 0.5)),
    # escape openings of 拆窗破网: window bars put back, and cut open again
    Transition(layer="escape_openings", reason="复查发现重装防盗窗 window bars put back",
               roles=(WORKER,), weight=0.5, when={"state": "open"}, to={"state": "blocked"},
               add=("condition=占用",)),
    Transition(layer="escape_openings", reason="破窗破网打通 window bars cut open again",
               roles=(WORKER,), weight=1, when={"state": "blocked"}, to={"state": "open"},
               remove=("condition=占用",)),
    # buildings: residents counted, damage and safety watch, planned projects
    Nudge(layer="buildings", reason="入户走访更新户数 households updated on a home visit",
          roles=(WORKER,), weight=3, most=6, attribute="households", steps=(-2, -1, 1, 2)),
    Nudge(layer="buildings", reason="更新老年人口 residents aged 60+ updated", roles=(WORKER,),
          weight=2, most=6, attribute="elderly", steps=(-1, 1, 2)),
    Transition(layer="buildings", reason="外立面破损 facade damaged", roles=(WORKER,), weight=1,
               lacks=("condition=",), add=("condition=破损",)),
    Transition(layer="buildings", reason="已修缮 repaired", roles=(WORKER, ADMIN), weight=1,
               has=("condition=破损",), remove=("condition=破损",)),
    Transition(layer="buildings", reason="列入安全观察 put under safety watch",
               roles=(WORKER, COMMANDER), weight=0.5, lacks=("安全观察",), add=("安全观察",)),
    Transition(layer="buildings", reason="解除安全观察 safety watch lifted", roles=(COMMANDER,),
               weight=2, has=("安全观察",), remove=("安全观察",)),
    Transition(layer="buildings", reason="纳入适老化改造 aging-friendly retrofit planned",
               roles=(PLANNER,), weight=3, most=4, lacks=("project=",),
               add=("project=适老化改造",)),
    Transition(layer="buildings", reason="纳入旧住房修缮 housing repair planned",
               roles=(PLANNER,), weight=2, most=4, lacks=("project=",),
               add=("project=旧住房修缮",)),
    Transition(layer="buildings", reason="适老化改造完工 retrofit completed", roles=(PLANNER,),
               weight=2, most=4, has=("project=适老化改造",), remove=("project=适老化改造",)),
    Nudge(layer="buildings", reason="核实层数 floors verified", roles=(ADMIN,), weight=1,
          attribute="floors", steps=(-1, 1)),
    # streets: surface damage, one-way orders, fire-engine access
    Transition(layer="streets", reason="路面破损 road surface damaged", roles=(WORKER,),
               weight=0.5, lacks=("condition=",), add=("condition=破损",)),
    Transition(layer="streets", reason="路面已修复 road surface repaired", roles=(WORKER, ADMIN),
               weight=0.5, has=("condition=破损",), remove=("condition=破损",)),
    Transition(layer="streets", reason="调整为单行道 made one-way", roles=(PLANNER,), weight=1,
               lacks=("单行道",), add=("单行道",)),
    Transition(layer="streets", reason="恢复双向通行 two-way again", roles=(PLANNER,), weight=1,
               has=("单行道",), remove=("单行道",)),
    Transition(layer="streets", reason="复核: 消防车不能通行 fire engines cannot pass",
               roles=(COMMANDER,), weight=1, when={"fire_engine": True},
               to={"fire_engine": False}),
    Transition(layer="streets", reason="复核: 消防车可以通行 fire engines can pass",
               roles=(COMMANDER,), weight=1, when={"fire_engine": False},
               to={"fire_engine": True}),
)


# ---------------------------------------------------------------------------------------
# When

@dataclass(frozen=True)
class Window:
    """Where a generated history goes: after ``start`` (a fresh sample is stamped then) and
    before ``end``, in the period's time zone and working hours."""

    start: datetime
    end: datetime
    period: HistorySpec


def history_window(engine: Engine, spec: SampleSpec) -> Window:
    """The spec's ``[history]`` period, moved to begin the day after the twin's newest change
    when that is later than its start (time only moves forward in a twin). Refused unless
    ``engine`` may stamp changes in the past, before anything is written."""
    return window_after(engine, spec, "SELECT max(server_time) FROM twin.changes",
                        "a generated history")


def window_after(engine: Engine, spec: SampleSpec, newest_sql: str, what: str) -> Window:
    """The spec's ``[history]`` period, moved to begin the day after the newest moment
    ``newest_sql`` finds when that is later than its start; ``what`` is stamped in the past,
    which only the schema's owner may do (else Forbidden)."""
    period = spec.history
    if period is None:
        raise InvalidInput("the sample spec has no [history] table", [Problem(
            "history", None, "add [history] with start, end, timezone, working_hours",
            "规格文件缺少 [history]")])
    with engine.connect() as conn:
        if not _clock_moves(conn):
            raise Forbidden(f"{what} is stamped in the past, which only the owner of schema "
                            "twin may do: connect as the owner (the local cluster's admin, or "
                            "a TWIN_DATABASE_URL of the owner)")
        newest = conn.execute(text(newest_sql)).scalar()
    tz = period.timezone
    start = datetime(period.start.year, period.start.month, period.start.day, tzinfo=tz)
    end = datetime(period.end.year, period.end.month, period.end.day, tzinfo=tz)
    length = end + timedelta(days=1) - start
    if newest is not None and newest > start:
        day = newest.astimezone(tz).date() + timedelta(days=1)
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return Window(start, start + length, period)


def load_moment(engine: Engine, spec: SampleSpec) -> datetime | None:
    """When a sample load is stamped: the first moment of the spec's period, before any
    history written then or later (and so before today: a fresh twin's board counts no
    edits today). None, now, where the spec has no period, ``engine`` may not stamp the past,
    or the twin already changed after that moment."""
    if spec.history is None:
        return None
    with engine.connect() as conn:
        if not _clock_moves(conn):
            return None
        newest = conn.execute(text("SELECT max(server_time) FROM twin.changes")).scalar()
    day = spec.history.start
    start = datetime(day.year, day.month, day.day, tzinfo=spec.history.timezone)
    return start if newest is None or newest <= start else None


def _clock_moves(conn: Connection) -> bool:
    """Whether this connection may set twin.clock: asked of twin.clock() itself."""
    probe = {"t": "2000-01-01T00:00:00+00:00"}
    conn.execute(text("SELECT set_config('twin.clock', :t, true)"), probe)
    moved = conn.execute(text("SELECT twin.clock() = CAST(:t AS timestamptz)"), probe).scalar()
    conn.rollback()
    return bool(moved)


def stamped_engine(url: str, at: datetime) -> Engine:
    """An engine whose changes are stamped ``at`` (twin.clock for whole sessions): a sample
    loaded with it is older than the history generated after it. Sessions speak UTC, as
    twin.store.db.make_engine's do."""
    return create_engine(url, pool_size=1, connect_args={
        "options": f"-c timezone=UTC -c twin.clock={at.isoformat()}"})


class _Calendar:
    """Maps the share of the history written so far to a moment: hours are weighted (working
    hours 1, the hour before and two after 0.12, weekends 0.4 of that), so most edits fall
    in working hours and the moments always increase, as the triggers expect."""

    def __init__(self, window: Window) -> None:
        first, last = window.period.working_hours
        hour = window.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        starts, weights = [], []
        while hour < window.end:
            local = hour.astimezone(window.period.timezone)
            weight = (1.0 if first <= local.hour < last else
                      0.12 if local.hour == first - 1 or last <= local.hour < last + 2 else 0.0)
            if hour >= window.start:
                starts.append(hour.timestamp())
                weights.append(weight * (0.4 if local.weekday() >= 5 else 1.0))
            hour += timedelta(hours=1)
        self.starts = np.array(starts)
        self.weights = np.array(weights)
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.weights)])

    def at(self, share: float) -> datetime:
        """The moment by which ``share`` (0 < share < 1) of the history has happened."""
        x = share * self.cumulative[-1]
        i = int(np.searchsorted(self.cumulative, x, side="right")) - 1
        seconds = (x - self.cumulative[i]) / self.weights[i] * 3600
        return datetime.fromtimestamp(float(self.starts[i] + seconds), UTC)


# ---------------------------------------------------------------------------------------
# Who, what and when, transaction by transaction

@dataclass(frozen=True)
class _Actor:
    name: str
    role: str
    grid: str | None  # the grid a worker edits (a worker of several grids is one per grid)
    device: str


@dataclass(frozen=True)
class _Transaction:
    actor: _Actor
    kind: Kind
    edits: list[_Edit]
    at: datetime
    client_time: datetime
    edit_id: str | None


def _device_lag(rng: Random, role: str) -> timedelta:
    """How far a device's clock is behind the server when its edit arrives: a moment online,
    up to a minute on a slow network, minutes for a tablet that was offline."""
    r = rng.random()
    if role != WORKER or r < 0.6:
        return timedelta(seconds=rng.uniform(0.05, 2.0))
    if r < 0.9:
        return timedelta(seconds=rng.uniform(2.0, 60.0))
    return timedelta(seconds=rng.uniform(60.0, 1800.0))


def _plan(world: _World, actors: Mapping[str, Sequence[_Actor]], calendar: _Calendar,
          n: int) -> Iterator[_Transaction]:
    """Transactions adding up to exactly ``n`` changes; each is remembered before the next
    is drawn, so that every edit starts from the feature's state at that moment."""
    rng = world.rng
    roles = [role for role in _ROLE_SHARE if actors.get(role)]
    if not roles:
        raise InvalidInput("the twin has no active users to write a history as; add some "
                           "with `twin user add`")
    role_weights = list(accumulate(_ROLE_SHARE[role] for role in roles))
    # Workers differ: a few are much busier than most.
    actor_weights = {role: list(accumulate(rng.gammavariate(2.0, 1.0) if role == WORKER
                                           else 1.0 for _ in actors[role])) for role in roles}
    kinds = {role: [k for k in KINDS if role in k.roles] for role in roles}
    kind_weights = {role: list(accumulate(k.weight for k in kinds[role])) for role in roles}
    anywhere = sorted(world.features, key=lambda g: (g is not None, g or ""))
    written = 0
    while written < n:
        for _ in range(_ATTEMPTS):
            role = rng.choices(roles, cum_weights=role_weights)[0]
            actor = rng.choices(actors[role], cum_weights=actor_weights[role])[0]
            kind = rng.choices(kinds[role], cum_weights=kind_weights[role])[0]
            grid = actor.grid if role == WORKER else rng.choice(anywhere)
            features = world.features.get(grid, {}).get(kind.layer, [])
            edits = kind.edits(world, grid, features, min(rng.randint(1, kind.most),
                                                          n - written))
            if edits:
                break
        else:
            raise InvalidInput("the twin holds nothing its users could edit: a history needs "
                               "features of the layers in twin.sample.history.KINDS")
        world.apply(kind, edits)
        at = calendar.at((written + len(edits) * rng.uniform(0.1, 0.9)) / n)
        edit_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if role == WORKER else None
        yield _Transaction(actor, kind, edits, at, at - _device_lag(rng, role), edit_id)
        written += len(edits)


# ---------------------------------------------------------------------------------------
# Reading the twin, writing the history

# One statement per transaction besides the context: a kind's edits as arrays (sent in
# binary, which spares escaping every JSON text into an array literal), unnested and joined
# on the layer's partition by primary key. The layer is a literal, not a parameter: then the
# planner prunes the other partitions once and a prepared statement keeps its generic plan,
# where a parameter had it planned afresh for every transaction.
_SQL = {
    "attrs": """
        UPDATE twin.features f
           SET props = u.props, tags = ARRAY(SELECT jsonb_array_elements_text(u.tags))
          FROM unnest(%(ids)b::bigint[], %(props)b::jsonb[], %(tags)b::jsonb[])
               AS u(id, props, tags)
         WHERE f.layer = {layer} AND f.id = u.id""",
    "move": """
        UPDATE twin.features f SET geom = ST_SetSRID(ST_MakePoint(u.x, u.y), 4326)
          FROM unnest(%(ids)b::bigint[], %(x)b::float8[], %(y)b::float8[]) AS u(id, x, y)
         WHERE f.layer = {layer} AND f.id = u.id""",
    "create": """
        INSERT INTO twin.features (id, layer, props, tags, geom)
        SELECT u.id, {layer}, u.props, ARRAY(SELECT jsonb_array_elements_text(u.tags)),
               ST_SetSRID(ST_MakePoint(u.x, u.y), 4326)
          FROM unnest(%(ids)b::bigint[], %(props)b::jsonb[], %(tags)b::jsonb[],
                      %(x)b::float8[], %(y)b::float8[]) AS u(id, props, tags, x, y)""",
    "delete": "DELETE FROM twin.features WHERE layer = {layer} AND id = ANY(%(ids)b)",
    # brought back as its last version was: the before trigger continues its numbering
    "restore": """
        INSERT INTO twin.features (id, layer, name, props, tags, geom)
        SELECT DISTINCT ON (v.feature_id) v.feature_id, v.layer, v.name, v.props, v.tags, v.geom
          FROM twin.feature_versions v
         WHERE v.feature_id = ANY(%(ids)b)
         ORDER BY v.feature_id, v.version DESC""",
}
_CONTEXT = ("SELECT set_config('twin.clock', %s, true), "
            "twin.set_context(%s, %s, %s, %s, %s, %s)")


@cache
def _statement(op: str, layer: str) -> str:
    """The statement of a kind of edit (``op``) of one layer."""
    return sql.SQL(_SQL[op]).format(layer=sql.Literal(layer)).as_string()


def _params(tx: _Transaction) -> dict[str, Any]:
    edits = tx.edits
    return {"ids": [e.feature.id for e in edits],
            "props": [Jsonb(e.props) for e in edits], "tags": [Jsonb(list(e.tags)) for e in edits],
            "x": [e.xy[0] if e.xy else None for e in edits],
            "y": [e.xy[1] if e.xy else None for e in edits]}


def _send(cur: psycopg.Cursor[Any], tx: _Transaction) -> None:
    """Queue one transaction in the connection's pipeline."""
    a = tx.actor
    cur.execute("BEGIN")
    cur.execute(_CONTEXT, (tx.at.isoformat(), a.name, a.role, a.device, tx.kind.reason,
                           tx.client_time, tx.edit_id))
    cur.execute(_statement(tx.kind.op, tx.kind.layer), _params(tx))
    cur.execute("COMMIT")


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    """A connection that writes generated transactions."""
    conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=0)
    # Commits need not wait for their WAL flush: a crash could lose the last generated
    # transactions, never consistency, and hundreds of thousands of flushes are saved.
    conn.execute("SET synchronous_commit = off")
    # The edits' statements are prepared once per layer (see _SQL), and their generic plans
    # are as good as any; left to choose, PostgreSQL would plan them anew for every small
    # array they are given, as it guesses 100 elements for an array it cannot see.
    conn.execute("SET plan_cache_mode = force_generic_plan")
    return conn


def _read_features(conn: psycopg.Connection[Any]) -> list[_Feature]:
    """The features of the layers that have kinds of edit."""
    rows = conn.execute("""
        SELECT id, layer, grid_code, props, tags,
               CASE WHEN GeometryType(geom) = 'POINT' THEN ST_X(geom) END,
               CASE WHEN GeometryType(geom) = 'POINT' THEN ST_Y(geom) END
          FROM twin.features WHERE layer = ANY(%s) ORDER BY id""",
                        (sorted({k.layer for k in KINDS}),)).fetchall()
    return [_Feature(fid, layer, grid, props, tuple(tags), None if x is None else (x, y))
            for fid, layer, grid, props, tags, x, y in rows]


def _read_grids(conn: psycopg.Connection[Any]) -> _Grids:
    """The micro-grids' shapes by code."""
    grids = conn.execute("SELECT props ->> 'code', ST_AsBinary(geom) FROM twin.features "
                         "WHERE layer = 'micro_grids' ORDER BY 1").fetchall()
    return _Grids({code: shapely.from_wkb(wkb) for code, wkb in grids})


def _new_ids(conn: psycopg.Connection[Any]) -> Callable[[], int]:
    """New feature ids from twin.feature_id_seq, taken a hundred at a time."""
    reserved: list[int] = []

    def new_id() -> int:
        if not reserved:
            reserved.extend(r[0] for r in conn.execute(
                "SELECT nextval('twin.feature_id_seq') FROM generate_series(1, 100)"))
            reserved.reverse()
        return reserved.pop()

    return new_id


def _read_actors(conn: psycopg.Connection[Any]) -> dict[str, list[_Actor]]:
    """Active users by role; a worker edits in each of their grids, on that grid's tablet."""
    actors: dict[str, list[_Actor]] = {}
    for name, role, grid in conn.execute(
            "SELECT u.name, u.role, g.grid_code FROM twin.users u "
            "LEFT JOIN twin.user_grids g ON g.user_id = u.id "
            "WHERE u.active ORDER BY u.name, g.grid_code"):
        if role == WORKER and grid is not None:
            actors.setdefault(role, []).append(_Actor(name, role, grid, f"tablet-{grid}"))
        elif role != WORKER:
            actors.setdefault(role, []).append(_Actor(name, role, None, f"pc-{name}"))
    return actors


@dataclass(frozen=True)
class _Share:
    """What one connection writes: ``n`` changes of its features by its actors, drawn from
    its own random stream."""

    rng: Random
    features: list[_Feature]
    actors: dict[str, list[_Actor]]
    n: int

    def plan(self, conn: psycopg.Connection[Any], grids: _Grids,
             calendar: _Calendar) -> Iterator[_Transaction]:
        return _plan(_World(self.rng, self.features, grids, _new_ids(conn)), self.actors,
                     calendar, self.n)


def _shares(features: Sequence[_Feature], actors: Mapping[str, Sequence[_Actor]],
            seed: int, n: int, jobs: int) -> list[_Share]:
    """The history split into ``jobs`` shares of the micro-grids (dealt round in code order),
    so that their connections never lock the same row, and so never wait for each other nor
    deadlock: not the same feature, as every edit keeps a feature in its grid and those
    outside every grid (grid NULL) are share 0's alone, nor the same row of
    twin.change_counts, whose key holds the grid. A share's workers are those of its grids;
    commanders, planners and admins edit in every share, in its grids only. Each share has
    its own random stream and an equal part of ``n``; one share is the whole history, drawn
    from the seed as it always was."""
    held = sorted({f.grid for f in features if f.grid is not None})  # every share edits some
    k = max(1, min(jobs, len(held)))
    share_of: dict[str | None, int] = {code: i % k for i, code in enumerate(held)}

    def share(g: int) -> _Share:
        rng = Random(seed if k == 1 else f"{seed} share {g} of {k}")  # noqa: S311 -- reproducible
        mine = {role: [a for a in group if role != WORKER or share_of.get(a.grid, 0) == g]
                for role, group in actors.items()}
        return _Share(rng, [f for f in features if share_of.get(f.grid, 0) == g], mine,
                      n // k + (g < n % k))

    return [share(g) for g in range(k)]


def _write(conn: psycopg.Connection[Any], plan: Iterable[_Transaction],
           advance: Callable[[int], None]) -> None:
    """Send the transactions through one pipeline: the server works through them while the
    next are planned and sent, instead of waiting for a round trip per statement."""
    with conn.pipeline() as pipeline, conn.cursor() as cur:
        queued = 0
        for i, tx in enumerate(plan, 1):
            _send(cur, tx)
            queued += len(tx.edits)
            if i % _BATCH == 0:
                pipeline.sync()  # waits for the server to catch up; errors surface here
                advance(queued)
                queued = 0
        pipeline.sync()
        advance(queued)


def _write_shares(conninfo: str, shares: Sequence[_Share], grids: _Grids, calendar: _Calendar,
                  advance: Callable[[int], None]) -> None:
    """Each share on its own connection, in its own thread: psycopg lets go of the GIL while
    it waits for the server, which is where the time goes. Progress is reported from here;
    a share that fails stops the others at their next transaction, and its error is raised."""
    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    stop = threading.Event()

    def write(share: _Share) -> None:
        with _connect(conninfo) as conn:
            _write(conn, takewhile(lambda _: not stop.is_set(),
                                   share.plan(conn, grids, calendar)), done.put)

    with ThreadPoolExecutor(len(shares)) as pool:
        pending = {pool.submit(write, share) for share in shares}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                while not done.empty():
                    advance(done.get())
                for future in finished:
                    future.result()
        finally:
            stop.set()


@dataclass(frozen=True)
class HistoryRun:
    """What a run wrote: change records counted in the log, and the wall time it took."""

    changes: int
    seconds: float


def default_jobs() -> int:
    """One connection per CPU, up to 8: the server's backends do most of the work."""
    return min(os.cpu_count() or 1, 8)


def write_history(url: str, n: int, seed: int, window: Window,
                  progress: Callable[[int], None] | None = None, jobs: int = 1) -> HistoryRun:
    """Append ``n`` generated changes to the twin at ``url`` (the schema owner's), spread
    over ``window``, by ``jobs`` connections at once; ``progress(k)`` is called (from this
    thread) as each k changes are committed. Only one job repeats a history exactly, ids of
    added features included: see the module's docstring."""
    started = time.perf_counter()
    advance = progress or (lambda _: None)
    conninfo = libpq_conninfo(url)
    with _connect(conninfo) as conn:
        # the versions closed in the window go straight to their months' partitions
        conn.execute("SELECT twin.version_partitions(%s, %s)", (window.start, window.end))
        grids = _read_grids(conn)
        shares = _shares(_read_features(conn), _read_actors(conn), seed, n, jobs)
        calendar = _Calendar(window)
        before = _scalar(conn, "SELECT coalesce(max(id), 0) FROM twin.changes")
        if len(shares) == 1:
            _write(conn, shares[0].plan(conn, grids, calendar), advance)
        else:
            _write_shares(conninfo, shares, grids, calendar, advance)
        written = _scalar(conn, "SELECT count(*) FROM twin.changes WHERE id > %s", before)
    return HistoryRun(int(written), time.perf_counter() - started)


def _scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None  # an aggregate always answers a row
    return row[0]
