"""An order's life: received from the city system (or a dispatcher, or Open311), placed from
its address or by a person, then moved along the hotline's steps (twin.order_transitions),
its handling deadline extended on approval. The rules (who may make which move, what each
needs, the clocks, merging repeat calls into one case) are the database's (twin.orders_before),
whose refusals come back as the errors the API names. Callers' contacts go only to
twin.set_caller(); phone numbers in the caller's words are masked before they are kept."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, text

from twin.cases.loop import refusals
from twin.errors import Forbidden, InvalidInput, NotFound, PreconditionFailed, Problem
from twin.features.edits import MAX_REASON
from twin.hotline.places import Placement, place_many
from twin.store.db import EditContext, set_context
from twin.users import User

CHANNELS = ("phone", "web", "app", "wechat", "open311", "other")
VERDICTS = ("satisfied", "basic", "dissatisfied")
RECEIVERS = ("dispatcher", "admin")  # who enters orders (an import runs as an admin)
MAX_WORDS = 4000
MAX_ADDRESS = 300
ORDER_NUMBER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PHONE = re.compile(r"^[0-9+ -]{3,20}$")
# a phone number inside the caller's words, however written (+86 138 1234 5678, 021-5888 1234,
# 58881234): any run of 7 or more digits, spaces and hyphens between them allowed
PHONE_IN_WORDS = re.compile(r"\+?[0-9](?:[ -]?[0-9]){6,}")


@dataclass(frozen=True)
class Order:
    """An order as the city system (or a dispatcher, or an outside app) sends it."""

    order_number: str
    received_at: datetime
    kind: str
    duty: str
    channel: str = "phone"
    category: str | None = None  # the street work it needs (a case category), if any
    words: str = ""
    address: str = ""
    caller_name: str | None = None
    caller_phone: str | None = None
    lon: float | None = None  # a position the caller's app gave: placed there
    lat: float | None = None


@dataclass(frozen=True)
class Received:
    """What receiving an order did: created, updated (what changed) or nothing."""

    id: int
    status: Literal["created", "updated", "unchanged"]
    placement: Placement | None
    changed: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()  # changes refused because the order has moved on


@dataclass(frozen=True)
class OrderMove:
    """A step asked for: the state to go to and what it carries."""

    to: str
    reason: str | None = None  # the reply's text, why it is sent back, ...
    approver: str | None = None
    verdict: str | None = None  # the caller's, on the return visit


def mask_phones(words: str) -> str:
    """138****5678 for every phone number in a text: its first three and last four digits
    kept, the rest starred (the caller's name cannot be told from other words: the caller's
    own name and phone are asked for apart, in twin.order_callers)."""
    def masked(m: re.Match[str]) -> str:
        digits = re.sub(r"[^0-9]", "", m.group(0))
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    return PHONE_IN_WORDS.sub(masked, words)


@contextmanager
def acting(conn: Connection, user: User, reason: str | None = None,
           approver: str | None = None) -> Iterator[None]:
    """Tell the triggers who acts, why and who approved it (this transaction)."""
    set_context(conn, EditContext(user.name, user.role, None, reason))
    conn.execute(text("SELECT set_config('twin.order_approver', coalesce(:a, ''), true)"),
                 {"a": approver})
    yield


# ---------------------------------------------------------------------------------------
# Receiving

@dataclass(frozen=True)
class Codes:
    """The kinds, duties and active categories an order may name (read once per batch)."""

    kinds: frozenset[str]
    duties: frozenset[str]
    categories: frozenset[str]


def codes(conn: Connection) -> Codes:
    def read(sql: str) -> frozenset[str]:
        return frozenset(conn.execute(text(sql)).scalars())
    return Codes(read("SELECT code FROM twin.order_kinds"),
                 read("SELECT code FROM twin.order_duties"),
                 read("SELECT code FROM twin.case_categories WHERE active"))


def order_problems(order: Order, known: Codes) -> list[Problem]:
    """What is wrong with an order as sent (every field, in English and Chinese)."""
    problems: list[Problem] = []
    if not ORDER_NUMBER.fullmatch(order.order_number or ""):
        problems.append(Problem("order_number", order.order_number,
                                "1-64 letters, digits, '.', '_' or '-'", "工单编号格式错误"))
    if order.received_at.tzinfo is None:
        problems.append(Problem("received_at", order.received_at.isoformat(),
                                "a time with its offset (e.g. +08:00)", "受理时间须带时区"))
    elif order.received_at > datetime.now(UTC) + timedelta(minutes=5):  # as the database says
        problems.append(Problem("received_at", order.received_at.isoformat(),
                                "an order cannot be received in the future",
                                "受理时间不能晚于当前时间"))
    if order.channel not in CHANNELS:
        problems.append(Problem("channel", order.channel, f"one of {', '.join(CHANNELS)}",
                                "来源渠道无效"))
    problems.extend(Problem(name, "\\0", "no NUL characters", "含非法字符")
                    for name, value in (("words", order.words), ("address", order.address),
                                        ("caller.name", order.caller_name or ""))
                    if "\x00" in value)
    if len(order.words) > MAX_WORDS:
        problems.append(Problem("words", len(order.words), f"at most {MAX_WORDS} characters",
                                "诉求内容过长"))
    if len(order.address) > MAX_ADDRESS:
        problems.append(Problem("address", len(order.address),
                                f"at most {MAX_ADDRESS} characters", "地址过长"))
    if order.caller_phone is not None and not PHONE.fullmatch(order.caller_phone):
        problems.append(Problem("caller.phone", "***", "3-20 digits, spaces, '+' or '-'",
                                "电话号码格式错误"))
    if order.caller_name is not None and len(order.caller_name) > 100:
        problems.append(Problem("caller.name", "***", "at most 100 characters", "姓名过长"))
    if (order.lon is None) != (order.lat is None) or (
            order.lon is not None and order.lat is not None
            and not (-180 <= order.lon <= 180 and -90 <= order.lat <= 90)):
        problems.append(Problem("position", [order.lon, order.lat],
                                "lon and lat together, in EPSG:4326", "经纬度无效"))
    for ok, name, value, zh in (
            (order.kind in known.kinds, "kind", order.kind, "无此工单类型"),
            (order.duty in known.duties, "duty", order.duty, "无此责任规则"),
            (order.category is None or order.category in known.categories, "category",
             order.category, "无此案件类别")):
        if not ok:
            where = "GET /cases/categories" if name == "category" else "GET /orders/rules"
            problems.append(Problem(name, value, f"no {name} has this code: {where}", zh))
    return problems


FIELDS = ("received_at", "kind", "duty", "channel", "category", "words", "address")


def receive_orders(conn: Connection, user: User, orders: Sequence[Order]) -> list[Received]:
    """Receive a batch in ``conn``'s transaction: each order created, or updated where the
    city system changed it (idempotent by order number). Orders are placed from their
    addresses in one go; an order the twin cannot place waits in the queue (no place).
    Raises InvalidInput for the first order with problems: the caller decides to skip it."""
    if user.role not in RECEIVERS:
        raise Forbidden(f"a {user.role} does not receive hotline orders", [
            Problem("role", user.role, "dispatchers and admins do",
                    "只有调度员和管理员可受理工单")])
    known = codes(conn)
    for n, order in enumerate(orders):
        problems = order_problems(order, known)
        if problems:
            raise InvalidInput(f"order {n + 1} ({order.order_number}): {problems[0].reason}",
                               problems)
    existing = _existing(conn, [o.order_number for o in orders])
    to_place = [i for i, o in enumerate(orders) if o.lon is None and o.address and (
        o.order_number not in existing or (existing[o.order_number]["state"] == "received" and (
            existing[o.order_number]["address"] != o.address
            or not existing[o.order_number]["placed"])))]
    placed = dict(zip(to_place, place_many(conn, [orders[i].address for i in to_place]),
                      strict=True))
    fresh: dict[str, int] = {}  # new order numbers -> their first row in the batch
    for i, order in enumerate(orders):
        if order.order_number not in existing:
            fresh.setdefault(order.order_number, i)
    out: dict[int, Received] = {}
    with acting(conn, user):
        created = _insert(conn, [(orders[i], placed.get(i)) for i in fresh.values()])
        out |= {i: Received(created[number], "created", placed.get(i))
                for number, i in fresh.items()}
        rest = [i for i in range(len(orders)) if i not in out]
        existing |= _existing(conn, [orders[i].order_number for i in rest if
                                     orders[i].order_number in fresh])
        for i in rest:  # a known order again: what changed, one by one
            out[i] = _update(conn, orders[i], existing[orders[i].order_number], placed.get(i))
    return [out[i] for i in range(len(orders))]


def _existing(conn: Connection, numbers: list[str]) -> dict[str, dict[str, Any]]:
    """The orders with these numbers, locked for this transaction."""
    return {r.order_number: dict(r._mapping) for r in conn.execute(text(
        "SELECT id, order_number, state, received_at, kind, duty, channel, category, words, "
        "address, geom IS NOT NULL AS placed FROM twin.orders WHERE order_number = ANY(:n) "
        "FOR UPDATE"), {"n": numbers})}


def _where(order: Order, placement: Placement | None) -> dict[str, Any]:
    """Where an order goes: the caller's own position, else its address's, else nowhere."""
    if order.lon is not None:
        return {"lon": order.lon, "lat": order.lat, "by": "caller", "feature": None}
    if placement is not None and placement.placed:
        return {"lon": placement.lon, "lat": placement.lat, "by": placement.precision,
                "feature": placement.feature_id}
    return {"lon": None, "lat": None, "by": None, "feature": None}


def _insert(conn: Connection, new: list[tuple[Order, Placement | None]]) -> dict[str, int]:
    """New orders in one statement, in the order they were received (each row's trigger sees
    the rows before it: a repeat call in the same batch is merged too), and their callers in
    another; their ids by number. Measured: 1.8 ms an order where one INSERT each took 4.5."""
    if not new:
        return {}
    where = [_where(o, p) for o, p in new]
    ids: dict[str, int] = dict(refusals(lambda: conn.execute(text("""
        INSERT INTO twin.orders (order_number, received_at, kind, duty, channel, category,
                                 words, address, geom, placed_by, placed_feature)
        SELECT n, r, k, d, c, cat, w, a, ST_SetSRID(ST_MakePoint(x, y), 4326), b, f
          FROM unnest(CAST(:n AS text[]), CAST(:r AS timestamptz[]), CAST(:k AS text[]),
                      CAST(:d AS text[]), CAST(:c AS text[]), CAST(:cat AS text[]),
                      CAST(:w AS text[]), CAST(:a AS text[]), CAST(:x AS float8[]),
                      CAST(:y AS float8[]), CAST(:b AS text[]), CAST(:f AS bigint[]))
               WITH ORDINALITY AS u(n, r, k, d, c, cat, w, a, x, y, b, f, i)
         ORDER BY r, i
        RETURNING order_number, id"""), {
        "n": [o.order_number for o, _ in new], "r": [o.received_at for o, _ in new],
        "k": [o.kind for o, _ in new], "d": [o.duty for o, _ in new],
        "c": [o.channel for o, _ in new], "cat": [o.category for o, _ in new],
        "w": [mask_phones(o.words) for o, _ in new], "a": [o.address for o, _ in new],
        "x": [w["lon"] for w in where], "y": [w["lat"] for w in where],
        "b": [w["by"] for w in where], "f": [w["feature"] for w in where]}).all()))
    callers = [(ids[o.order_number], o.caller_name, o.caller_phone) for o, _ in new
               if o.caller_name is not None or o.caller_phone is not None]
    if callers:
        refusals(lambda: conn.execute(text(
            "SELECT twin.set_caller(i, n, p) FROM unnest(CAST(:i AS bigint[]), "
            "CAST(:n AS text[]), CAST(:p AS text[])) AS u(i, n, p)"),
            {"i": [c[0] for c in callers], "n": [c[1] for c in callers],
             "p": [c[2] for c in callers]}))
    return ids


def _update(conn: Connection, order: Order, old: dict[str, Any],
            placement: Placement | None) -> Received:
    """A known order received again: the fields the city system changed, logged."""
    values = {"number": order.order_number, "received_at": order.received_at,
              "kind": order.kind, "duty": order.duty, "channel": order.channel,
              "category": order.category, "words": mask_phones(order.words),
              "address": order.address}
    where = _where(order, placement)
    changed = tuple(f for f in FIELDS if values[f] != old[f])
    problems: tuple[Problem, ...] = ()
    if changed and old["state"] != "received":  # the city system's words still count
        problems = tuple(Problem(f, values[f] if f != "received_at" else str(values[f]),
                                 f"order {order.order_number} is {old['state']}: "
                                 "corrected only before it is accepted", "工单已签收,不再更正")
                         for f in changed if f != "words")
        changed = ("words",) if "words" in changed else ()
    replace_place = placement is not None or order.lon is not None
    if changed or replace_place:
        refusals(lambda: conn.execute(text(f"""
            UPDATE twin.orders SET {', '.join(f'{f} = :{f}' for f in changed) or 'id = id'}
              {', geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), placed_by = :by, '
               'placed_feature = :feature' if replace_place else ''}
             WHERE id = :id"""), values | where | {"id": old["id"]}))  # noqa: S608
    if order.caller_name is not None or order.caller_phone is not None:
        changed += ("caller",) if refusals(lambda: conn.execute(text(
            "SELECT twin.set_caller(:id, :name, :phone)"), {
            "id": old["id"], "name": order.caller_name, "phone": order.caller_phone}
        ).scalar_one()) else ()
    moved = replace_place and placement is not None and placement.placed
    return Received(old["id"], "updated" if changed or moved else "unchanged", placement,
                    changed, problems)


def receive(engine: Engine, user: User, order: Order) -> Received:
    """One order, in its own transaction."""
    with engine.begin() as conn:
        return receive_orders(conn, user, [order])[0]


# ---------------------------------------------------------------------------------------
# Acting on one order

def visible_sql(user: User) -> tuple[str, dict[str, Any]]:
    """Which orders a user sees: a worker those in their grids, a department its own, a
    subdistrict's users those of their subdistrict, the district's command centre, planners
    and admins all."""
    if user.role == "worker":
        return "o.grid_code = ANY(:grids)", {"grids": list(user.grids)}
    if user.role == "department":
        return "o.department = :dept", {"dept": user.department}
    if user.subdistrict is not None:
        return "o.subdistrict_code = :my_subdistrict", {"my_subdistrict": user.subdistrict}
    return "true", {}


def locked(conn: Connection, user: User, order_id: int) -> dict[str, Any]:
    """The order, locked for this transaction, if the user may see it (else 404)."""
    where, params = visible_sql(user)
    row = conn.execute(text(f"SELECT id, version, state FROM twin.orders o "  # noqa: S608
                            f"WHERE id = :id AND {where} FOR UPDATE"),
                       params | {"id": order_id}).mappings().first()
    if row is None:
        raise NotFound(f"no order {order_id}", [Problem("id", order_id, "no such order (or not "
                                                        "yours to see)", "无此工单")])
    return dict(row)


def order_etag(order_id: int, version: int) -> str:
    return f'"order-{order_id}-{version}"'


def _fresh(order: dict[str, Any], base_version: int | None) -> None:
    if base_version is not None and base_version != order["version"]:
        raise PreconditionFailed(
            f"order {order['id']} is at version {order['version']}, not {base_version}",
            [Problem("If-Match", base_version, "stale: read the order again",
                     "工单已被他人更新,请刷新")],
            current={"version": order["version"],
                     "etag": order_etag(order["id"], order["version"])})


def _text_problems(reason: str | None, approver: str | None) -> list[Problem]:
    problems = []
    if reason is not None and len(reason) > MAX_REASON:
        problems.append(Problem("reason", len(reason), f"at most {MAX_REASON} characters",
                                "内容过长"))
    if approver is not None and len(approver) > 100:
        problems.append(Problem("approver", len(approver), "at most 100 characters",
                                "审批人过长"))
    return problems


def move(engine: Engine, user: User, order_id: int, step: OrderMove,
         base_version: int | None) -> int:
    """Move an order to ``step.to``; its new version."""
    problems = _text_problems(step.reason, step.approver)
    if step.verdict is not None and step.verdict not in VERDICTS:
        problems.append(Problem("verdict", step.verdict, f"one of {', '.join(VERDICTS)}",
                                "回访结果无效"))
    if problems:
        raise InvalidInput(f"cannot move order {order_id}: {problems[0].reason}", problems)
    with engine.begin() as conn:
        order = locked(conn, user, order_id)
        _fresh(order, base_version)
        with acting(conn, user, step.reason, step.approver):
            refusals(lambda: conn.execute(text(
                "UPDATE twin.orders SET state = :to, verdict = coalesce(:verdict, verdict) "
                "WHERE id = :id"), {"to": step.to, "verdict": step.verdict, "id": order_id}))
        return int(conn.execute(text("SELECT version FROM twin.orders WHERE id = :id"),
                                {"id": order_id}).scalar_one())


def extend(engine: Engine, user: User, order_id: int, by: str, reason: str | None,
           approver: str | None, base_version: int | None) -> int:
    """Move the handling deadline on by ``by`` (approved: reason and approver required)."""
    problems = _text_problems(reason, approver)
    if problems:
        raise InvalidInput(f"cannot extend order {order_id}: {problems[0].reason}", problems)
    with engine.begin() as conn:
        order = locked(conn, user, order_id)
        _fresh(order, base_version)
        with acting(conn, user, reason, approver):
            refusals(lambda: conn.execute(text(
                "UPDATE twin.orders SET extended = extended || CAST(:by AS text) "
                "WHERE id = :id"), {"by": by, "id": order_id}))
        return int(conn.execute(text("SELECT version FROM twin.orders WHERE id = :id"),
                                {"id": order_id}).scalar_one())


def place(engine: Engine, user: User, order_id: int, lon: float, lat: float,
          base_version: int | None) -> int:
    """A person places an order the twin could not (the queue), before it is accepted."""
    if user.role not in RECEIVERS:
        raise Forbidden(f"a {user.role} does not place orders", [
            Problem("role", user.role, "dispatchers place orders", "只有调度员可定位工单")])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidInput("position out of range", [Problem(
            "position", [lon, lat], "lon, lat in EPSG:4326", "经纬度超出范围")])
    with engine.begin() as conn:
        order = locked(conn, user, order_id)
        _fresh(order, base_version)
        with acting(conn, user, "placed by hand"):
            grid = refusals(lambda: conn.execute(text(
                "UPDATE twin.orders SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), "
                "placed_by = 'person', placed_feature = NULL WHERE id = :id "
                "RETURNING grid_code"), {"lon": lon, "lat": lat, "id": order_id}).scalar())
        if grid is None:
            raise InvalidInput("the position is outside the subdistrict", [Problem(
                "position", [lon, lat], "outside every micro-grid", "位置不在本街道范围内")])
        return int(conn.execute(text("SELECT version FROM twin.orders WHERE id = :id"),
                                {"id": order_id}).scalar_one())


def caller(engine: Engine, user: User, order_id: int, purpose: str | None) -> dict[str, Any]:
    """The caller's name and phone, for calling back: dispatchers only, every read logged."""
    with engine.begin() as conn:
        locked(conn, user, order_id)
        with acting(conn, user, purpose):
            row = refusals(lambda: conn.execute(text(
                "SELECT name, phone, erased_at FROM twin.caller(:id)"), {"id": order_id}).one())
    return {"order": order_id, "name": row.name, "phone": row.phone,
            "erased_at": row.erased_at.isoformat() if row.erased_at else None}


def erase_callers(engine: Engine, user: User, ended_before: datetime) -> int:
    """Erase the contacts of orders ended before a time (the retention period); each logged."""
    with engine.begin() as conn, acting(conn, user, "retention"):
        return int(refusals(lambda: conn.execute(text("SELECT twin.erase_callers(:t)"),
                                                 {"t": ended_before}).scalar_one()))
