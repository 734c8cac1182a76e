"""A case's life: reported, then moved along the lifecycle (twin.case_transitions), its
deadlines extended on approval. Who may ask for what is checked here (a worker inside their
own grids and for what is sent to them, a department for its own cases); which moves exist,
what each needs and the deadlines are the database's (twin.cases_before), whose refusals
come back as the errors the API names. Every write goes through ``twin.features.edits.receive``,
as a feature edit does: once per edit id, kept with its answer, a tablet's stale move held as
a conflict."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from twin.cases.reads import case_feature, visible_sql
from twin.errors import (
    Forbidden,
    IllegalMove,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Problem,
    TwinError,
    Unprocessable,
)
from twin.features.edits import MAX_REASON, Edit, Outcome, receive
from twin.features.photos import missing_photos
from twin.store.db import EditContext, set_context
from twin.users import User

SOURCES = ("worker", "patrol", "hotline", "leader", "sensor", "resident")
PRIORITIES = ("normal", "urgent")
REPORTERS = ("worker", "dispatcher")
MAX_PHOTOS = 10
MAX_DESCRIPTION = 2000


@dataclass(frozen=True)
class Position:
    """Where the one acting stood, from the tablet's GPS."""

    lon: float
    lat: float
    accuracy_m: float | None = None


@dataclass(frozen=True)
class Report:
    """A case as its reporter sends it."""

    lon: float
    lat: float
    category: str
    source: str | None = None  # a worker's is "worker"
    description: str = ""
    priority: str = "normal"
    feature: tuple[str, int] | None = None  # the component it concerns (layer, id)
    photos: tuple[str, ...] = ()
    order_number: str | None = None


@dataclass(frozen=True)
class Move:
    """A transition asked for: the state to go to and what it carries."""

    to: str
    reason: str | None = None
    assignee: str | None = None
    department: str | None = None
    approver: str | None = None
    duplicate_of: int | None = None
    photos: tuple[str, ...] = ()
    position: Position | None = None
    seen_state: str | None = None  # the state the device saw (a tablet's move)


@dataclass(frozen=True)
class Extension:
    """An extension of the running stage: asked for (``limit``), approved or refused."""

    decision: Literal["request", "approve", "refuse"]
    limit: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Sent:
    """How a write arrived: the client's edit id (Idempotency-Key), device and its clock."""

    edit_id: str | None = None
    device: str | None = None
    device_seq: int | None = None
    device_time: datetime | None = None


# ---------------------------------------------------------------------------------------
# The three writes

def report(engine: Engine, user: User, rep: Report, sent: Sent = Sent()) -> Outcome:
    """A new case, ``reported``; its grid, area and squad derived from its place."""
    edit = _edit(sent, "create", {k: v for k, v in asdict(rep).items() if v not in (None, ())})

    def apply(conn: Connection, edit_id: str) -> tuple[Outcome, str | None]:
        if user.role not in REPORTERS:
            raise Forbidden(f"a {user.role} does not report cases (workers and dispatchers do)",
                            [Problem("role", user.role, "may not report cases", "无权上报案件")])
        source = rep.source or ("worker" if user.role == "worker" else None)
        problems = _report_problems(conn, user, rep, source)
        if problems:
            raise Unprocessable(f"cannot report this case: {problems[0].reason}", problems)
        with _acting(conn, user, sent, edit_id, rep.photos, None):
            row = refusals(lambda: conn.execute(text("""
                INSERT INTO twin.cases (geom, category, source, priority, description, photos,
                                        feature_layer, feature_id, order_number)
                VALUES (ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :category, :source,
                        :priority, :description, :photos, :layer, :fid, :order)
                RETURNING id, grid_code"""), {
                "lon": rep.lon, "lat": rep.lat, "category": rep.category, "source": source,
                "priority": rep.priority, "description": rep.description,
                "photos": list(rep.photos), "layer": rep.feature[0] if rep.feature else None,
                "fid": rep.feature[1] if rep.feature else None,
                "order": rep.order_number}).one())
        if row.grid_code is None:
            raise Unprocessable("the case is outside the subdistrict (its micro-grids)", [
                Problem("geometry", [rep.lon, rep.lat], "outside every micro-grid",
                        "位置不在本街道(微网格)范围内")])
        if user.role == "worker" and row.grid_code not in user.grids:
            raise Forbidden(f"the case lies in micro-grid {row.grid_code}, not one of yours", [
                Problem("geometry", [rep.lon, rep.lat],
                        f"in micro-grid {row.grid_code}; you answer for {', '.join(user.grids)}",
                        "只能在本人负责的微网格内上报")])
        case = case_feature(conn, row.id)
        return Outcome("applied", 1, case, created=True), row.grid_code

    return receive(engine, user, edit, apply, lambda conn, exc: _refused(conn, None, exc))


def transition(engine: Engine, user: User, case_id: int, move: Move,
               base_version: int | None, merge: bool, sent: Sent = Sent()) -> Outcome:
    """Move a case to ``move.to``. ``base_version`` is the version the client saw: over HTTP a
    stale one is refused (412); from a tablet (``merge``) the move still applies if the case
    is in the state the device saw, else it is held as a conflict."""
    new = {k: v for k, v in asdict(move).items() if v not in (None, ()) and k != "seen_state"}
    old = {"state": move.seen_state} if move.seen_state else {}
    edit = _edit(sent, "transition", new, case_id, base_version, old)

    def apply(conn: Connection, edit_id: str) -> tuple[Outcome, str | None]:
        case = _locked(conn, user, case_id)
        stale = _stale(case, base_version, merge, move.seen_state)
        if stale is not None:
            return stale, case["grid_code"]
        _check_scope(user, case, move.to)
        problems = _move_problems(conn, move)
        if problems:
            raise Unprocessable(f"cannot move case {case_id}: {problems[0].reason}", problems)
        with _acting(conn, user, sent, edit_id, move.photos, move.position, move.reason,
                     move.approver):
            refusals(lambda: conn.execute(text("""
                UPDATE twin.cases SET state = :to, assignee = coalesce(:assignee, assignee),
                       department = coalesce(:department, department),
                       duplicate_of = coalesce(:dup, duplicate_of)
                 WHERE id = :id"""), {"to": move.to, "assignee": move.assignee,
                                      "department": move.department,
                                      "dup": move.duplicate_of, "id": case_id}))
        after = case_feature(conn, case_id)
        return Outcome("applied", after["properties"]["version"], after), case["grid_code"]

    return receive(engine, user, edit, apply, lambda conn, exc: _refused(conn, case_id, exc))


def extend(engine: Engine, user: User, case_id: int, ext: Extension,
           base_version: int | None, sent: Sent = Sent()) -> Outcome:
    """Ask for more time on the running stage (its handler or a dispatcher), or approve or
    refuse what was asked (a dispatcher): an approval moves the stage's and the case's due."""
    edit = _edit(sent, "update", {"extension": asdict(ext)}, case_id, base_version)
    sql = {"request": "extension = :limit",
           "approve": "extended = extended || extension, extension = NULL",
           "refuse": "extension = NULL"}[ext.decision]

    def apply(conn: Connection, edit_id: str) -> tuple[Outcome, str | None]:
        case = _locked(conn, user, case_id)
        stale = _stale(case, base_version, False, None)
        assert stale is None  # refused by raising when not merging
        if ext.decision == "request":
            _check_scope(user, case, "handled")
        elif user.role != "dispatcher":
            raise Forbidden(f"a {user.role} may not {ext.decision} an extension (dispatchers do)",
                            [Problem("role", user.role, "only a dispatcher decides extensions",
                                     "延期由调度员审批")])
        if ext.decision != "request" and case["extension"] is None:
            raise Unprocessable(f"case {case_id} has no extension waiting for a decision", [
                Problem("extension", None, "nothing was asked for", "没有待审批的延期申请")])
        if ext.reason is not None and len(ext.reason) > MAX_REASON:
            raise Unprocessable("reason too long", [Problem(
                "reason", len(ext.reason), f"at most {MAX_REASON} characters", "理由过长")])
        with _acting(conn, user, sent, edit_id, (), None, ext.reason):
            refusals(lambda: conn.execute(text(f"UPDATE twin.cases SET {sql} WHERE id = :id"),  # noqa: S608
                                     {"limit": ext.limit, "id": case_id}))
        after = case_feature(conn, case_id)
        return Outcome("applied", after["properties"]["version"], after), case["grid_code"]

    return receive(engine, user, edit, apply, lambda conn, exc: _refused(conn, case_id, exc))


# ---------------------------------------------------------------------------------------
# Who is acting, and the database's answers

def _edit(sent: Sent, op: Literal["create", "update", "transition"], new: dict[str, Any],
          case_id: int | None = None, base_version: int | None = None,
          old: dict[str, Any] | None = None) -> Edit:
    """The write as ``twin.edits`` keeps it (layer ``cases``)."""
    jsonable = json.loads(json.dumps(new, default=str))
    return Edit("cases", op, jsonable, case_id, base_version, old or {}, sent.edit_id,
                sent.device, sent.device_seq, sent.device_time,
                jsonable.get("reason"))


@contextmanager
def _acting(conn: Connection, user: User, sent: Sent, edit_id: str, photos: tuple[str, ...],
            position: Position | None, reason: str | None = None,
            approver: str | None = None) -> Iterator[None]:
    """Tell the triggers who acts, why, with what evidence and from where (this transaction)."""
    set_context(conn, EditContext(user.name, user.role, sent.device, reason, sent.device_time,
                                  edit_id))
    conn.execute(text(
        "SELECT set_config('twin.department', coalesce(:dept, ''), true), "
        "set_config('twin.case_photos', :photos, true), "
        "set_config('twin.case_position', coalesce(:pos, ''), true), "
        "set_config('twin.case_accuracy', coalesce(:acc, ''), true), "
        "set_config('twin.case_approver', coalesce(:approver, ''), true)"), {
        "dept": user.department, "photos": "{" + ",".join(photos) + "}",
        "pos": f"SRID=4326;POINT({position.lon} {position.lat})" if position else None,
        "acc": str(position.accuracy_m) if position and position.accuracy_m is not None
        else None, "approver": approver})
    yield


def refusals(run: Callable[[], Any]) -> Any:
    """Run a write; a lifecycle's refusals (SQLSTATE TW409, TW403, TW422, raised by the
    triggers of cases and of hotline orders) and broken references become the domain's
    errors."""
    try:
        return run()
    except DBAPIError as exc:
        orig = exc.orig
        state = getattr(orig, "sqlstate", None)
        diag = getattr(orig, "diag", None)
        message = (diag.message_primary if diag else None) or str(orig)
        detail = json.loads(diag.message_detail) if diag and diag.message_detail and \
            state in ("TW409", "TW422") else {}
        if state == "TW409":
            allowed = detail.get("allowed", [])
            raise IllegalMove(f"{message}; allowed: {', '.join(allowed) or 'none'}", [
                Problem("to", None, f"allowed from here: {', '.join(allowed) or 'none'}",
                        "当前状态不允许此流转")], allowed=allowed) from None
        if state == "TW403":
            raise Forbidden(message, [Problem("role", None, message, "当前角色无权此操作")]
                            ) from None
        if state == "TW422":
            raise Unprocessable(message, [Problem(detail.get("field", "state"),
                                                  detail.get("value"), message,
                                                  detail.get("reason_zh", ""))]) from None
        if state == "23503":  # a department, case, kind or duty named that does not exist
            constraint = getattr(diag, "constraint_name", "") or ""
            name = next((n for n in ("department", "duplicate_of", "kind", "duty", "category")
                         if n.removesuffix("_of") in constraint), "case")
            raise Unprocessable(f"{name}: no such {name.replace('_of', '')}", [
                Problem(name, None, "does not exist", "不存在")]) from None
        if state == "23505":
            raise Unprocessable("order_number: already used", [
                Problem("order_number", None, "already used", "工单号已存在")]) from None
        raise


def _refused(conn: Connection, case_id: int | None, exc: TwinError) -> Outcome:
    """The answer to a refused write: the case as it is, and why."""
    case = None
    if case_id is not None:
        with suppress(NotFound):  # a case that does not exist: the refusal says so
            case = case_feature(conn, case_id)
    exc.problems = exc.problems or [Problem("case", None, exc.message, "")]
    extra: dict[str, Any] = exc.current if isinstance(exc, PreconditionFailed) else {}
    if isinstance(exc, IllegalMove):
        extra = {"allowed": exc.allowed}
    return Outcome("rejected", case["properties"]["version"] if case else None, case,
                   exc.problems, refusal=exc, extra=extra)


# ---------------------------------------------------------------------------------------
# Checks

def _locked(conn: Connection, user: User, case_id: int) -> dict[str, Any]:
    """The case, locked for this transaction, if the user may see it (else 404)."""
    where, params = visible_sql(user)
    row = conn.execute(text(f"SELECT id, version, state, grid_code, assignee, department, "  # noqa: S608
                            f"handled_by, extension FROM twin.cases c WHERE id = :id AND "
                            f"{where} FOR UPDATE"), params | {"id": case_id}).mappings().first()
    if row is None:
        raise NotFound(f"no case {case_id}", [Problem("id", case_id, "no such case (or not "
                                                      "yours to see)", "无此案件")])
    return dict(row)


def case_etag(case_id: int, version: int) -> str:
    return f'"case-{case_id}-{version}"'


def _stale(case: dict[str, Any], base_version: int | None, merge: bool,
           seen_state: str | None) -> Outcome | None:
    """None when the write may go on; a held conflict for a tablet whose case moved on."""
    if base_version is None or base_version == case["version"]:
        return None
    if base_version > case["version"]:
        raise InvalidInput(f"case {case['id']} has no version {base_version}", [Problem(
            "base_version", base_version, f"unknown; the current version is {case['version']}",
            f"无此版本,当前版本为 {case['version']}")])
    current = {"version": case["version"], "etag": case_etag(case["id"], case["version"])}
    if not merge:
        raise PreconditionFailed(
            f"case {case['id']} is at version {case['version']}, not {base_version}",
            [Problem("If-Match", base_version, "stale: read the case again",
                     "案件已被他人更新,请刷新")], current=current)
    if seen_state is None or seen_state == case["state"]:
        return None  # only other fields moved (an extension, a re-route): the move still holds
    return Outcome("conflict", case["version"], None, [Problem(
        "state", {"seen": seen_state, "now": case["state"]},
        f"the case has moved on since: it is {case['state']}, not {seen_state}",
        "案件状态已变化,请刷新后再处理")])


def _check_scope(user: User, case: dict[str, Any], to: str) -> None:
    """A worker handles or returns only what was sent to them and verifies only in their own
    grids; a department acts only on its own cases. (Which roles may make a move at all is
    the lifecycle table's, checked by the database.)"""
    if user.role == "department" and case["department"] != user.department:
        raise Forbidden(f"case {case['id']} is not your department's", [Problem(
            "department", case["department"], f"you are of {user.department}",
            "非本部门案件")])
    if user.role != "worker":
        return
    if case["state"] == "dispatched" and to in ("handled", "filed") \
            and case["assignee"] != user.name:
        raise Forbidden(f"case {case['id']} is not dispatched to you", [Problem(
            "assignee", case["assignee"], "only its assignee handles or returns it",
            "只有被派遣人可处置或回退")])
    if case["state"] == "handled" and case["grid_code"] not in user.grids:
        raise Forbidden(f"case {case['id']} is in micro-grid {case['grid_code']}", [Problem(
            "micro_grid", case["grid_code"], "verified by the workers of its own grid",
            "只能核查本人负责微网格内的案件")])


def _photo_problems(conn: Connection, photos: tuple[str, ...]) -> list[Problem]:
    if len(photos) > MAX_PHOTOS:
        return [Problem("photos", len(photos), f"at most {MAX_PHOTOS}",
                        f"照片不超过{MAX_PHOTOS}张")]
    return [Problem("photos", digest, "no photo with this digest: PUT /photos/<digest> first",
                    "照片尚未上传") for digest in missing_photos(conn, photos)]


def _report_problems(conn: Connection, user: User, rep: Report, source: str | None
                     ) -> list[Problem]:
    problems = _photo_problems(conn, rep.photos)
    if source not in SOURCES:
        problems.append(Problem("source", source, f"one of {', '.join(SOURCES)}",
                                "来源无效"))
    elif user.role == "worker" and source != "worker":
        problems.append(Problem("source", source, "a worker's report has source worker",
                                "网格员上报的来源为 worker"))
    if rep.priority not in PRIORITIES:
        problems.append(Problem("priority", rep.priority, f"one of {', '.join(PRIORITIES)}",
                                "优先级无效"))
    if len(rep.description) > MAX_DESCRIPTION:
        problems.append(Problem("description", len(rep.description),
                                f"at most {MAX_DESCRIPTION} characters", "描述过长"))
    if not (-180 <= rep.lon <= 180 and -90 <= rep.lat <= 90):
        problems.append(Problem("geometry", [rep.lon, rep.lat], "longitude and latitude "
                                "(EPSG:4326) out of range", "经纬度超出范围"))
    if not conn.execute(text("SELECT EXISTS (SELECT FROM twin.case_categories WHERE code = :c "
                             "AND active)"), {"c": rep.category}).scalar():
        problems.append(Problem("category", rep.category, "no active category has this code: "
                                "GET /cases/categories", "无此案件类别"))
    if rep.feature is not None and not conn.execute(text(
            "SELECT EXISTS (SELECT FROM twin.features WHERE layer = :l AND id = :id)"),
            {"l": rep.feature[0], "id": rep.feature[1]}).scalar():
        problems.append(Problem("feature", {"layer": rep.feature[0], "id": rep.feature[1]},
                                "no such feature", "无此要素"))
    return problems


def _move_problems(conn: Connection, move: Move) -> list[Problem]:
    problems = _photo_problems(conn, move.photos)
    if move.reason is not None and len(move.reason) > MAX_REASON:
        problems.append(Problem("reason", len(move.reason), f"at most {MAX_REASON} characters",
                                "理由过长"))
    if move.assignee is not None and not conn.execute(text(
            "SELECT EXISTS (SELECT FROM twin.users WHERE name = :n AND active "
            "AND role IN ('worker', 'department', 'dispatcher'))"), {"n": move.assignee}).scalar():
        problems.append(Problem("assignee", move.assignee, "no active worker, department user "
                                "or dispatcher has this name", "无此处置人"))
    pos = move.position
    if pos is not None and (not (-180 <= pos.lon <= 180 and -90 <= pos.lat <= 90)
                            or (pos.accuracy_m is not None and pos.accuracy_m < 0)):
        problems.append(Problem("position", asdict(pos), "lon, lat in EPSG:4326 and a "
                                "non-negative accuracy_m", "位置无效"))
    return problems

