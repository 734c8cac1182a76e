"""A generated half year of 12345 hotline orders: ``twin sample --orders N`` receives N.

As with the sample's cases (``twin.sample.cases``, whose planner's working-time clock, case
context and helpers this reuses), the orders are made as their users make them, through the
real triggers: they are received by ``twin.hotline.loop.receive_orders`` as the city system's
export is imported (every quarter hour of working time; the night's and rest days' calls at
the first import after them), the caller's contact through twin.set_caller, the address placed
on the twin's own buildings or left in the queue; then each is moved along the hotline's steps
by plain UPDATEs of its state under the context ``twin.hotline.loop.acting`` sets, stamped
through ``twin.clock`` (only the schema's owner may set it). What is generated:

- N orders received by the city system over the spec's ``[history]`` period, at the hours
  people call (working hours most, evenings and rest days less, nights hardly), numbered
  ``SH<yyyymmdd><nnnn>``;
- kinds (help and complaint most; consultation, suggestion, supervision few), duties (首办
  mostly, some 兜底 and 指定), channels (phone mostly) in realistic shares; a case category
  for most help, complaints and supervision (street work), none for consultations and
  suggestions; the caller's words from a few templates per kind; a synthetic caller (a
  surname and 先生/女士, a random 139 number);
- the address a caller says for one of the twin's buildings (``caller_address``; the plan
  keeps the building, to measure placing: ``placed_right``); about 2 % are unplaceable and
  wait in the queue (received, no place), never accepted;
- a few repeat calls (3 %) about a matter called in before (same kind, category and
  building, within 28 days), which the trigger merges (repeat_of), with any others its rule
  finds; a handful sent back (退单, with a reason and the approver);
- each placed order's life: accepted by ``dispatcher`` within hours (a few late), first
  contact within a day (a few late); the case acceptance files is dispatched, handled by its
  assignee (filing's route: the grid's worker or squad lead) or its department's user, and
  verified and closed by the dispatcher near it; the reply (答复) follows, almost always on
  time; the return visit (回访) finds about 90 % satisfied, 7 % basically satisfied and 3 %
  dissatisfied, re-handled (重办) and visited again. Steps after the period are not taken: its
  last days end with open orders.

The plan is drawn from the seed alone (``plan_orders``: the same seed, window and twin give
the same orders and steps), and written by ``jobs`` connections at once, each the orders of
its own case categories, in time order. A case step moves the case the order has by then, if
it still waits for that step (repeat calls may share a case, whose steps the first of their
flows takes).
"""

from __future__ import annotations

import queue
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from itertools import accumulate, groupby
from random import Random
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from twin.errors import InvalidInput, Problem
from twin.hotline.loop import Order, receive_orders
from twin.hotline.places import place_many
from twin.sample.addresses import caller_address, kept_plate
from twin.sample.cases import (
    _CONTEXT,
    APPROVER,
    DISPATCHER,
    _Planner,
    _read_twin,
    _routes,
    _store_photo,
    _Twin,
)
from twin.sample.history import Window, window_after
from twin.sample.spec import SampleSpec
from twin.users import User

SAMPLE_USER = User(0, "sample", "admin", ())  # who receives: the city system's import
PREFIX = "SH"  # order numbers SH<yyyymmdd><nnnn>, apart from the cases' 12345-<id>
_TX = 200  # steps per transaction
_IMPORTS = timedelta(minutes=15)  # the city system's export is imported this often
_IMPORT_TAKES = timedelta(seconds=20)

# Shares (relative weights) of what a Shanghai subdistrict's 12345 orders are.
_KINDS = {"help": 40, "complaint": 35, "consultation": 14, "suggestion": 6, "supervision": 5}
_DUTIES = {"first": 80, "fallback": 12, "designated": 8}
_CHANNELS = {"phone": 82, "app": 7, "wechat": 5, "web": 5, "other": 1}
_STREET_WORK = {"help": 0.8, "complaint": 0.9, "supervision": 0.75}  # share with a case
# What callers ask the street to do something about (codes of twin.case_categories).
_CATEGORIES = {
    "E0508": 12, "E0505": 12, "E0102": 10, "E0507": 8, "C0304": 6, "E0506": 6, "E9003": 6,
    "E9004": 6, "C0118": 6, "E0501": 5, "E0110": 5, "E9005": 4, "E0504": 4, "E9002": 4,
    "E0101": 4, "E0406": 3, "E0104": 3, "C0102": 1,
}
_QUEUED = 0.02      # left in the queue: the twin cannot place what the caller said
_REPEAT = 0.03      # calls again about a matter called in before
_RETURNED = 0.005   # sent back (首办 orders only)
_LATE_ACCEPT, _LATE_CONTACT, _LATE_REPLY = 0.01, 0.03, 0.002
_VERDICTS = {"satisfied": 0.90, "basic": 0.07, "dissatisfied": 0.03}

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余"
_WORDS = {
    "help": ("{cat}，请尽快派人来处理。", "发现{cat}的情况，希望有关部门帮忙解决。",
             "这里{cat}已经好几天了，麻烦派人来看一下。"),
    "complaint": ("投诉{cat}，影响居民休息和出行，要求处理。",
                  "{cat}问题反复出现，多次反映仍未解决。", "反映{cat}，希望尽快整改到位。"),
    "supervision": ("此前反映的{cat}问题至今未处理，要求督办。", "{cat}问题整改不到位，申请督办。"),
    "consultation": ("咨询垃圾分类投放点的开放时间。", "咨询老旧小区加装电梯的申请流程。",
                     "咨询居住证办理需要准备哪些材料。", "咨询小区电动自行车充电设施的建设计划。",
                     "咨询社区卫生服务中心的预约方式。"),
    "suggestion": ("建议在小区周边增设非机动车停放点。", "建议延长垃圾箱房的开放时间。",
                   "建议在路口增设行人过街提示标志。", "建议社区增加老年人助餐点。"),
}
_WORDS_PLAIN = ("小区内公共设施损坏，希望有关部门帮助解决。",  # no street work: no case
                "邻里之间有矛盾，希望居委会帮忙协调。", "楼道照明坏了，请物业尽快修复。")
_REPLIES = ("已联系处置部门现场处理，问题已解决，已告知市民。",
            "经现场核实并整改，处理结果已答复市民。")
_ANSWERS = ("已电话答复市民咨询的内容。", "已将市民建议转相关部门研究，并答复市民。")
_REHANDLED = "重办：再次现场处置，已整改到位并答复市民。"
_RETURN_REASONS = ("经核实不属于本街道职责范围，申请退回重派。",
                   "诉求地址不在本街道辖区，申请退单。")
_HANDLE_NOTE = "12345工单处置完毕 handled for the hotline order"
_VERIFIED = "核查通过, 结案 verified: closed"


# ---------------------------------------------------------------------------------------
# The plan

@dataclass(slots=True)
class _Step:
    """One write: the order received, an order move, or a step of its case (by whom, and
    for a verification where the verifier stands)."""

    at: datetime
    call: int
    kind: str  # receive | order | case
    to: str | None = None
    reason: str | None = None
    approver: str | None = None
    verdict: str | None = None
    actor: str = DISPATCHER
    role: str = DISPATCHER
    device: str = "pc-dispatcher"
    department: str | None = None
    position: str | None = None  # EWKT


@dataclass(slots=True)
class Call:
    """An order as the city system sends it, the building the caller meant, where the twin
    places it (None: the queue) and its life."""

    order: Order
    building: int | None  # the building whose door plate the caller's words come from
    plate: str | None
    xy: tuple[float, float] | None = None
    repeat: bool = False        # a call again about a matter called in before
    called_again: bool = False  # a matter a repeat call is about
    handler: tuple[str, str, str, str | None] | None = None  # actor, role, device, department
    steps: list[_Step] = field(default_factory=list)

    @property
    def placed(self) -> bool:
        return self.xy is not None


@dataclass(frozen=True)
class OrderPlan:
    """What a run writes: the calls, in the order they are received."""

    calls: list[Call]

    @property
    def steps(self) -> int:
        return sum(len(c.steps) for c in self.calls)


@dataclass(frozen=True)
class _Rules:
    """What the plan reads from the twin: rules, people, buildings, roads."""

    twin: _Twin
    kinds: dict[str, str]                   # kind -> handle_limit
    duties: dict[str, dict[str, Any]]       # duty -> its limits
    buildings: list[tuple[int, str]]        # (id, door plate)
    weights: list[float]                    # cumulative: bigger buildings call more
    roads: list[str]


def _read_rules(conn: Connection) -> _Rules:
    twin = _read_twin(_raw(conn))
    kinds = {str(r.code): str(r.handle_limit) for r in conn.execute(text(
        "SELECT code, handle_limit FROM twin.order_kinds"))}
    duties = {r.code: dict(r._mapping) for r in conn.execute(text(
        "SELECT code, accept_limit, contact_limit, handle_limit, rehandle_limit, visit_limit "
        "FROM twin.order_duties"))}
    if not kinds or not duties:
        raise InvalidInput("the twin has no hotline rules: orders need them (the spec's "
                           "[cases] hotline file, loaded with the sample)", [Problem(
                               "order_duties", [], "none loaded", "未加载热线工单规则")])
    rows = conn.execute(text(
        "SELECT id, props ->> 'address' AS plate, "
        "coalesce((props ->> 'households')::int, 0) AS households FROM twin.features "
        "WHERE layer = 'buildings' AND props ->> 'address' IS NOT NULL ORDER BY id")).all()
    if not rows:
        raise InvalidInput("the twin has no buildings with a door plate for callers to name",
                           [Problem("buildings", [], "load the sample first", "缺少建筑门牌")])
    roads = sorted(conn.execute(text(
        "SELECT DISTINCT name FROM twin.features WHERE layer = 'streets' AND name <> '' "
        "AND name NOT LIKE '%弄'")).scalars())
    return _Rules(twin, kinds, duties, [(r.id, r.plate) for r in rows],
                  list(accumulate(max(r.households, 10) for r in rows)), roads)


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under ``conn`` (the cases sample's helpers speak psycopg)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _pick(rng: Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class _Life:
    """Draws each call's steps in working time (the cases sample's planner's clock)."""

    def __init__(self, rules: _Rules, window: Window, rng: Random) -> None:
        self.rules, self.window, self.rng = rules, window, rng
        self.work = rules.twin.work
        self.planner = _Planner(rules.twin, window, rng, "", lambda _c, _g: (None, None))

    def within(self, t: datetime, due: datetime, lo: float, hi: float) -> datetime:
        """A moment ``lo`` to ``hi`` of the working time from ``t`` to ``due`` (at least a
        minute after ``t``)."""
        hours = self.work.hours_between(t, due) if due > t else 0.0
        return (self.work.add_hours(t, max(hours * self.rng.uniform(lo, hi), 1 / 60))
                .replace(microsecond=0) + timedelta(seconds=1))

    def late(self, due: datetime, hours: tuple[float, float]) -> datetime:
        return (self.work.add_hours(due, self.rng.uniform(*hours)).replace(microsecond=0)
                + timedelta(seconds=1))

    def imported(self, t: datetime) -> datetime:
        """When the twin imports an order the city system received at ``t``: every quarter
        hour of working time (from each working period's start), the calls of the night and
        of rest days at the first import after them."""
        work, zone = self.work, self.work.zone
        here = t.astimezone(zone).replace(tzinfo=None) + timedelta(minutes=1)
        day = here.date()
        while True:
            if work.working(day):
                for starts, ends in work.periods:
                    start, end = datetime.combine(day, starts), datetime.combine(day, ends)
                    waited = max(here - start, timedelta())
                    moment = start + _IMPORTS * -(-waited // _IMPORTS)  # rounded up
                    if moment <= end:
                        return moment.replace(tzinfo=zone).astimezone(UTC) + _IMPORT_TAKES
            day += timedelta(days=1)
            here = datetime.combine(day, clock_time())

    def steps(self, i: int, call: Call, returned: bool) -> list[_Step]:
        """The order's steps from its receipt (a queued one: none but that)."""
        rng, work, after = self.rng, self.work, self.planner.after
        order = call.order
        duty = self.rules.duties[order.duty]
        received = self.imported(order.received_at)
        steps = [_Step(received, i, "receive")]
        if call.xy is None:
            return steps
        if returned:
            steps.append(_Step(after(received, duty["accept_limit"], 0.1, 0.9), i, "order",
                               "returned", rng.choice(_RETURN_REASONS), APPROVER))
            return steps
        accept_due = work.add(order.received_at, duty["accept_limit"])
        accepted = (self.late(accept_due, (0.2, 3)) if rng.random() < _LATE_ACCEPT
                    else self.within(received, accept_due, 0.05, 0.8))
        steps.append(_Step(accepted, i, "order", "accepted"))
        contact_due = work.add(order.received_at, duty["contact_limit"])
        handle_due = work.add(order.received_at,
                              duty["handle_limit"] or self.rules.kinds[order.kind])
        # a late first contact, where it leaves time to reply by the deadline
        contacted = (self.late(contact_due, (0.5, 4)) if rng.random() < _LATE_CONTACT
                     and work.hours_between(contact_due, handle_due) > 8
                     else self.within(accepted, contact_due, 0.05, 0.7))
        steps.append(_Step(contacted, i, "order", "contacted"))
        ready = contacted
        if order.category is not None and call.handler is not None:
            case = self.case_steps(i, call, accepted, handle_due)
            steps += case
            ready = max(ready, *(s.at for s in case if s.to == "handled"))
        words = _REPLIES if order.category is not None else _ANSWERS
        replied = (self.late(handle_due, (0.5, 8)) if rng.random() < _LATE_REPLY
                   else self.within(ready, handle_due, 0.1, 0.8))
        steps.append(_Step(replied, i, "order", "replied", rng.choice(words)))
        verdict = _pick(rng, _VERDICTS)
        visited = after(replied, duty["visit_limit"], 0.05, 0.8)
        if verdict != "dissatisfied":
            steps.append(_Step(visited, i, "order", "closed", verdict=verdict))
        else:
            again = after(visited, duty["rehandle_limit"], 0.1, 0.8)
            steps += [_Step(visited, i, "order", "reopened", verdict=verdict),
                      _Step(again, i, "order", "replied", _REHANDLED),
                      _Step(after(again, duty["visit_limit"], 0.05, 0.8), i, "order", "closed",
                            verdict="satisfied")]
        return steps

    def case_steps(self, i: int, call: Call, accepted: datetime, handle_due: datetime
                   ) -> list[_Step]:
        """The case accepting files: dispatched by the dispatcher, handled by its handler
        before the order's deadline, verified and closed by the dispatcher near it."""
        assert call.order.category is not None and call.handler is not None and call.xy
        limits = self.rules.twin.categories[call.order.category].limits
        actor, role, device, department = call.handler
        dispatched = self.planner.after(accepted, limits["dispatch"], 0.05, 0.8)
        handled = self.within(dispatched, min(self.work.add(dispatched, limits["handle"]),
                                              handle_due), 0.1, 0.8)
        steps = [_Step(dispatched, i, "case", "dispatched"),
                 _Step(handled, i, "case", "handled", _HANDLE_NOTE, actor=actor, role=role,
                       device=device, department=department)]
        if actor != DISPATCHER:  # verified by someone other than the handler
            x, y = self.planner.near(call.xy)
            steps.append(_Step(self.planner.after(handled, limits["verify"], 0.05, 0.9), i,
                               "case", "closed", _VERIFIED,
                               position=f"SRID=4326;POINT({x} {y})"))
        return steps


def _words(rng: Random, kind: str, category: str | None, rules: _Rules) -> str:
    if category is None:
        return rng.choice(_WORDS[kind]) if kind in ("consultation", "suggestion") else \
            rng.choice(_WORDS_PLAIN)
    name = re.sub(r"（.*?）|\(.*?\)", "", rules.twin.categories[category].name_zh)
    return rng.choice(_WORDS.get(kind, _WORDS["help"])).format(cat=name)


def _caller(rng: Random) -> tuple[str, str]:
    name = rng.choice(_SURNAMES) + rng.choice(("先生", "女士"))
    return name, "139" + "".join(rng.choice("0123456789") for _ in range(8))


def plan_orders(conn: Connection, window: Window, n: int, seed: int, subdistrict: str,
                prefix: str = PREFIX) -> OrderPlan:
    """``n`` calls over ``window`` and each one's steps, from ``seed`` and what the twin holds
    (its rules, people, buildings and streets; addresses are placed as receiving will place
    them, to know which wait in the queue and who handles each case). Reads only."""
    return _plan(conn, _read_rules(conn), window, n, seed, subdistrict, prefix)


def _plan(conn: Connection, rules: _Rules, window: Window, n: int, seed: int,
          subdistrict: str, prefix: str) -> OrderPlan:
    rng = Random(f"orders {seed}")  # noqa: S311 -- reproducible, not secret
    life = _Life(rules, window, rng)
    cats = {c: w for c, w in _CATEGORIES.items() if c in rules.twin.categories}
    kinds: dict[str, float] = ({k: w for k, w in _KINDS.items() if k in rules.kinds}
                               or dict.fromkeys(rules.kinds, 1.0))
    duties: dict[str, float] = ({d: w for d, w in _DUTIES.items() if d in rules.duties}
                                or dict.fromkeys(rules.duties, 1.0))
    n_repeat = round(n * _REPEAT)
    calls: list[Call] = []
    for _ in range(n - n_repeat):
        kind = _pick(rng, kinds)
        category = (_pick(rng, cats) if cats and rng.random() < _STREET_WORK.get(kind, 0)
                    else None)
        building, plate = rng.choices(rules.buildings, cum_weights=rules.weights)[0]
        at = life.planner.moments.draw(rng)
        while life.imported(at) >= window.end:  # imported after the period: called earlier
            at = life.planner.moments.draw(rng)
        calls.append(Call(Order(
            "", at, kind, _pick(rng, duties), _pick(rng, _CHANNELS), category,
            _words(rng, kind, category, rules),
            caller_address(rng, plate, rules.roads, subdistrict), *_caller(rng)),
            building, plate))
    # the call taker asks again when the words name no place and writes the door plate
    # down, but some callers cannot say (and a plate on two buildings still waits)
    said = place_many(conn, [c.order.address for c in calls])
    unplaced = [i for i, p in enumerate(said) if not p.placed]
    plates = place_many(conn, [calls[i].plate or "" for i in unplaced])
    placeable = [i for i, p in zip(unplaced, plates, strict=True) if p.placed]
    keep = set(rng.sample(placeable, max(0, min(len(placeable), round(n * _QUEUED)
                                                - (len(unplaced) - len(placeable))))))
    for i, p in zip(unplaced, plates, strict=True):
        if i not in keep and p.placed:
            calls[i].order = replace(calls[i].order, address=calls[i].plate or "")
    calls += _repeats(conn, rng, life, calls, n_repeat, rules, subdistrict)
    calls.sort(key=lambda c: c.order.received_at)
    _number(calls, window, prefix)
    _place(conn, rules, calls)
    for i, call in enumerate(calls):
        returned = (call.order.duty == "first" and not (call.repeat or call.called_again)
                    and rng.random() < _RETURNED)
        call.steps = [s for s in life.steps(i, call, returned) if s.at < window.end]
        for before, later in zip(call.steps, call.steps[1:], strict=False):
            if later.at <= before.at:  # never two steps of an order at the same second
                later.at = before.at + timedelta(seconds=1)
    return OrderPlan(calls)


def _repeats(conn: Connection, rng: Random, life: _Life, calls: Sequence[Call], n: int,
             rules: _Rules, subdistrict: str) -> list[Call]:
    """``n`` calls again about a matter with a case called in before: same kind, category,
    duty and building, 2 hours to 28 days later (inside the merge window of 30 days). The
    matter is at a door plate of one building: a plate on two waits in the queue, unmerged."""
    window = life.window
    plates = Counter(plate for _, plate in rules.buildings)
    first = [c for c in calls if c.order.category is not None
             and life.imported(c.order.received_at + timedelta(hours=2)) < window.end]
    if not any(plates[c.plate or ""] == 1 for c in first) or not n:
        return []
    out: list[Call] = []
    for _ in range(n):
        original = rng.choice(first)
        while plates[original.plate or ""] != 1:
            original = rng.choice(first)
        original.called_again = True
        o = original.order
        latest = min(window.end, o.received_at + timedelta(days=28))
        while True:  # imported inside the period
            at = o.received_at + timedelta(hours=2) + (
                latest - o.received_at - timedelta(hours=2)) * rng.random()
            if life.imported(at) < window.end:
                break
        assert original.plate is not None
        out.append(Call(Order(
            "", at.replace(microsecond=0), o.kind, o.duty, _pick(rng, _CHANNELS), o.category,
            _words(rng, o.kind, o.category, rules),
            caller_address(rng, original.plate, rules.roads, subdistrict), *_caller(rng)),
            original.building, original.plate, repeat=True))
    # both calls are placed on the building: the plate is written down when the words
    # (of either) do not say it
    both = [*out, *(c for c in first if c.called_again)]
    for call, p in zip(both, place_many(conn, [c.order.address for c in both]), strict=True):
        if not (p.placed and p.feature_id == call.building):
            call.order = replace(call.order, address=call.plate or "")
    return out


def _number(calls: list[Call], window: Window, prefix: str) -> None:
    """Number the calls as the city system does: the local day and a count within it."""
    zone = window.period.timezone
    day, count = None, 0
    for call in calls:
        local = call.order.received_at.astimezone(zone).date()
        count = count + 1 if local == day else 1
        day = local
        call.order = replace(call.order, order_number=f"{prefix}{local:%Y%m%d}{count:04d}")


def _place(conn: Connection, rules: _Rules, calls: Sequence[Call]) -> None:
    """Where receiving will place each call, and who handles the case of each placed call
    that needs one: filing's own route for the grid there (as in the cases sample)."""
    for call, p in zip(calls, place_many(conn, [c.order.address for c in calls]), strict=True):
        if p.placed and p.lon is not None and p.lat is not None:
            call.xy = (p.lon, p.lat)
    worked = [c for c in calls if c.xy and c.order.category]
    if not worked:
        return
    grids = conn.execute(text(
        "SELECT twin.code_at('micro_grids', ST_SetSRID(ST_MakePoint(x, y), 4326)) "
        "FROM unnest(CAST(:x AS float8[]), CAST(:y AS float8[])) WITH ORDINALITY AS u(x, y, i) "
        "ORDER BY i"), {"x": [c.xy[0] for c in worked if c.xy],
                        "y": [c.xy[1] for c in worked if c.xy]}).scalars().all()
    pairs = {(str(c.order.category), g) for c, g in zip(worked, grids, strict=True) if g}
    routes = _routes(_raw(conn), pairs, rules.twin.squads) if pairs else {}
    for call, grid in zip(worked, grids, strict=True):
        cat = rules.twin.categories[str(call.order.category)]
        assignee, _department = routes.get((cat.code, grid), (None, None))
        if assignee:
            device = f"tablet-{grid}" if assignee.startswith("worker-") else f"tablet-{assignee}"
            call.handler = (assignee, "worker", device, None)
        elif cat.department in rules.twin.departments:
            user = rules.twin.departments[cat.department]
            call.handler = (user, "department", f"pc-{user}", cat.department)
        else:
            call.handler = (DISPATCHER, DISPATCHER, "pc-dispatcher", None)


# ---------------------------------------------------------------------------------------
# Writing

_CLOCK = text("SELECT set_config('twin.clock', :t, true)")
# The context twin.hotline.loop.acting() sets, with the clock, in one statement.
_ORDER_CONTEXT = ("SELECT set_config('twin.clock', %s, true), twin.set_context(%s, %s, %s, %s), "
                  "set_config('twin.order_approver', coalesce(%s, ''), true)")
_ORDER_MOVE = ("UPDATE twin.orders SET state = %s, verdict = coalesce(%s, verdict) "
               "WHERE order_number = %s")
# The case the order has now, when it waits for this step: repeat calls may share a case,
# whose steps the first flow to reach them takes; a verifier is near the case.
_CASE_MOVE = """
    UPDATE twin.cases SET state = %s
     WHERE id = (SELECT case_id FROM twin.orders WHERE order_number = %s) AND state = %s
       AND (%s::text IS NULL OR ST_DWithin(geom::geography, ST_GeomFromEWKT(%s)::geography,
                                           (SELECT verify_distance_m FROM twin.case_rules)))"""
_BEFORE = {"dispatched": "filed", "handled": "dispatched", "closed": "handled"}


def _send(raw: psycopg.Connection[Any], step: _Step, number: str, photo: str) -> None:
    """An order move, or a case step with the context the cases sample sets."""
    if step.kind == "order":
        raw.execute(_ORDER_CONTEXT, (step.at.isoformat(), step.actor, step.role, step.device,
                                     step.reason, step.approver))
        raw.execute(_ORDER_MOVE, (step.to, step.verdict, number))
        return
    assert step.to is not None
    raw.execute(_CONTEXT, (step.at.isoformat(), step.actor, step.role, step.device, step.reason,
                           None, None, step.department, "{" + photo + "}", step.position,
                           "8.0" if step.position else None, None))
    raw.execute(_CASE_MOVE, (step.to, number, _BEFORE[step.to], step.position, step.position))


def _write(url: str, plan: OrderPlan, steps: Sequence[_Step], photo: str,
           advance: Callable[[int], None]) -> None:
    """Steps in time order on a connection of their own, ``_TX`` to a transaction: each
    receipt through receive_orders, the moves between receipts through one pipeline (the
    server works through them while the next are sent)."""
    engine = owner_engine(url)
    try:
        with engine.connect() as conn:
            raw = _raw(conn)
            for k in range(0, len(steps), _TX):
                batch = steps[k:k + _TX]
                for (receiving, at), run in groupby(batch, key=lambda s: (
                        s.kind == "receive", s.at if s.kind == "receive" else None)):
                    if receiving and at is not None:  # one import: its orders at once
                        conn.execute(_CLOCK, {"t": at.isoformat()})
                        receive_orders(conn, SAMPLE_USER,
                                       [plan.calls[step.call].order for step in run])
                    else:
                        with raw.pipeline():
                            for step in run:
                                _send(raw, step, plan.calls[step.call].order.order_number,
                                      photo)
                conn.commit()  # what SQLAlchemy began (a receipt), if anything
                raw.commit()   # and the moves sent past it
                advance(len(batch))
    finally:
        engine.dispose()


def _shares(plan: OrderPlan, jobs: int) -> list[list[_Step]]:
    """The steps split into ``jobs`` shares that never touch each other's orders or cases,
    each in time order: a repeat call is merged (and shares a case) only with one of the same
    category, and a case is flagged a likely duplicate only of one of its category, so each
    category goes whole to one share; orders without one are dealt round."""
    groups: dict[str, list[int]] = {}
    for i, call in enumerate(plan.calls):
        key = call.order.category or f"-{i % max(jobs, 1)}"
        groups.setdefault(key, []).append(i)
    shares: list[list[int]] = [[] for _ in range(max(1, jobs))]
    for _key, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        min(shares, key=len).extend(members)  # the largest groups first, to the lightest
    out = []
    for share in shares:
        steps = [s for i in share for s in plan.calls[i].steps]
        steps.sort(key=lambda s: (s.at, s.call))
        if steps:
            out.append(steps)
    return out


def _write_shares(url: str, plan: OrderPlan, photo: str, jobs: int,
                  advance: Callable[[int], None]) -> None:
    """Each share on its own connection and thread; progress is reported from here."""
    shares = _shares(plan, jobs)
    if len(shares) <= 1:
        for steps in shares:
            _write(url, plan, steps, photo, advance)
        return
    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    with ThreadPoolExecutor(len(shares)) as pool:
        futures = [pool.submit(_write, url, plan, steps, photo, done.put) for steps in shares]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
            while not done.empty():
                advance(done.get())
        while not done.empty():
            advance(done.get())
        for f in futures:
            f.result()


@dataclass(frozen=True)
class OrderRun:
    """What a run wrote: orders received, left in the queue, merged as repeat calls, cases
    filed for them, order events logged, and the wall time."""

    received: int
    queued: int
    repeats: int
    cases: int
    events: int
    seconds: float


def orders_window(engine: Engine, spec: SampleSpec) -> Window:
    """The spec's ``[history]`` period, moved to begin the day after the twin's newest order
    event when that is later (an order's time only moves forward). Refused unless ``engine``
    may stamp the past."""
    return window_after(engine, spec, "SELECT max(server_time) FROM twin.order_events",
                        "generated hotline orders")


def owner_engine(url: str) -> Engine:
    """The owner's engine a run writes with: sessions in UTC, commits not waited for (a
    crash loses generated steps, never their order)."""
    return create_engine(url, poolclass=NullPool, connect_args={
        "options": "-c timezone=UTC -c synchronous_commit=off"})


def write_orders(url: str, n: int, seed: int, window: Window, subdistrict: str,
                 progress: Callable[[int], Callable[[int], None]] | None = None,
                 jobs: int = 1) -> OrderRun:
    """Receive ``n`` generated orders in the twin at ``url`` (the schema owner's) over
    ``window`` and run each through its steps, by ``jobs`` connections at once (the same
    seed gives the same orders and events; with more than one job their ids may differ).
    ``progress(total)`` returns a callback advanced (from this thread) as steps commit."""
    started = time.perf_counter()
    engine = owner_engine(url)
    try:
        with engine.connect() as conn:
            before = conn.execute(text("SELECT coalesce(max(id), 0) FROM twin.orders")).scalar()
            plan = plan_orders(conn, window, n, seed, subdistrict)
            photo = _store_photo(_raw(conn), window.start)
            conn.commit()
            _write_shares(url, plan, photo, jobs,
                          progress(plan.steps) if progress else (lambda _: None))
            row = conn.execute(text("""
                SELECT count(*), count(*) FILTER (WHERE geom IS NULL),
                       count(*) FILTER (WHERE repeat_of IS NOT NULL), count(DISTINCT case_id),
                       (SELECT count(*) FROM twin.order_events e WHERE e.order_id > :b)
                  FROM twin.orders WHERE id > :b"""), {"b": before}).one()
            conn.commit()
    finally:
        engine.dispose()
    return OrderRun(row[0], row[1], row[2], row[3], row[4], time.perf_counter() - started)


def placed_right(conn: Connection, plan: OrderPlan) -> tuple[int, int]:
    """Of the plan's orders whose words keep their building's whole door plate, how many the
    twin placed on that very building: (right, kept)."""
    kept = {c.order.order_number: c.building for c in plan.calls
            if c.plate is not None and kept_plate(c.order.address, c.plate)}
    found = conn.execute(text(
        "SELECT order_number, placed_by, placed_feature FROM twin.orders "
        "WHERE order_number = ANY(:n)"), {"n": list(kept)}).all()
    right = sum(r.placed_by == "building" and r.placed_feature == kept[r.order_number]
                for r in found)
    return right, len(kept)
