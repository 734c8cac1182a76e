"""Offline sync for tablets: the outbox in (``POST /sync``), the scope out (``GET /sync/scope``),
conflicts to settle (``/conflicts``) and every received edit for admins (``GET /edits``).

A batch is applied edit by edit, in order, each in its own transaction: one bad edit never
holds back the others, and every edit gets a result (applied, merged, duplicate, conflict or
rejected) and is kept in ``twin.edits``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from api.deps import EngineDep, UserDep, get_pool
from api.errors import SIGNED, errors, media
from api.html import layers_json
from api.observe import SYNC_EDITS
from api.openapi import json_body
from api.params import INTEGER, MAX_ID, Id, digits, reject_unknown
from api.routes.cases import SyncCase, sync_case
from api.routes.edits import read_json
from twin.errors import Forbidden, InvalidInput, Problem, TwinError, Unprocessable
from twin.features.edits import (
    MAX_KEY,
    MAX_REASON,
    Edit,
    Outcome,
    list_conflicts,
    received_edits,
    resolve_conflict,
    submit,
)
from twin.field.outboxes import OutboxReport, record
from twin.field.scope import DEFAULT_BUFFER_M, MAX_BUFFER_M, Scope, editable_layers, read_scope
from twin.users import User

router = APIRouter(tags=["sync"], responses=errors(*SIGNED))
MAX_EDITS = 500
MAX_BATCH = 8 * 1024 * 1024


class Change(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old: Any = None
    new: Any = None


class SyncEdit(BaseModel):
    """One edit of a tablet's outbox (the sync batch of DESIGN.md)."""

    model_config = ConfigDict(extra="forbid")
    edit_id: str = Field(min_length=1, max_length=MAX_KEY)
    device_id: str | None = Field(default=None, max_length=MAX_KEY)
    device_seq: int | None = Field(default=None, ge=0, le=MAX_ID)
    layer: str = Field(max_length=64)
    feature_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    op: Literal["create", "update", "delete"]
    base_version: int | None = Field(default=None, ge=1, le=INTEGER)
    changes: dict[str, Change] = Field(default_factory=dict)
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    device_time: AwareDatetime | None = None  # RFC 3339 with its offset
    accuracy_m: float | None = None

    def edit(self) -> Edit:
        # an "old" value given (null included) is what the device saw; absent: unknown
        return Edit(self.layer, self.op, {k: c.new for k, c in self.changes.items()},
                    self.feature_id, self.base_version,
                    {k: c.old for k, c in self.changes.items() if "old" in c.model_fields_set},
                    self.edit_id, self.device_id,
                    self.device_seq, self.device_time, self.reason, self.accuracy_m)


class Outbox(BaseModel):
    """The device's own count of what it still holds besides this batch."""

    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=MAX_KEY)
    waiting: int = Field(ge=0, le=1_000_000)
    oldest_device_time: AwareDatetime | None = None
    sent_at: AwareDatetime

    @model_validator(mode="after")
    def oldest_iff_waiting(self) -> Outbox:
        if (self.waiting > 0) != (self.oldest_device_time is not None):
            raise ValueError("oldest_device_time is given exactly when edits are waiting")
        return self

    def report(self) -> OutboxReport:
        return OutboxReport(self.device_id, self.waiting, self.oldest_device_time, self.sent_at)


def _outbox(raw: Any) -> OutboxReport | None:
    """The batch's outbox report, if any; a malformed one refuses the whole batch unapplied."""
    if raw is None:
        return None
    try:
        return Outbox.model_validate(raw).report()
    except ValidationError as exc:
        raise Unprocessable("outbox: not an outbox report; no edit was applied", [
            Problem(".".join(("outbox", *(str(p) for p in e["loc"]))), e.get("input"),
                    e["msg"], "待同步报告格式错误") for e in exc.errors(include_url=False)]
        ) from exc


def _malformed(raw: Any, exc: ValidationError) -> dict[str, Any]:
    """The result of an edit that is not one: rejected, naming each bad member."""
    problems = [Problem(".".join(str(p) for p in e["loc"]) or "edit", e.get("input"), e["msg"],
                        "同步条目格式错误").as_dict() for e in exc.errors(include_url=False)]
    edit_id = raw.get("edit_id") if isinstance(raw, dict) else None
    return {"edit_id": edit_id, "status": "rejected", "version": None, "feature": None,
            "problems": problems, "error": "Unprocessable", "message": "not a sync edit"}


def _apply_batch(engine: Any, user: User, edits: list[Any]) -> list[dict[str, Any]]:
    results = []
    for raw in edits:
        if isinstance(raw, dict) and raw.get("layer") == "cases":
            results.append(_case_result(engine, user, raw))
            continue
        try:
            edit = SyncEdit.model_validate(raw)
        except ValidationError as exc:
            results.append(_malformed(raw, exc))
            continue
        outcome: Outcome = submit(engine, user, edit.edit(), merge=True)
        results.append(outcome.result(edit.edit_id))
    return results


def _case_result(engine: Any, user: User, raw: dict[str, Any]) -> dict[str, Any]:
    """A case report or move of the batch: its result, or rejected naming what is wrong."""
    try:
        outcome = sync_case(engine, user, raw)
    except TwinError as exc:
        return {"edit_id": raw.get("edit_id"), "status": "rejected", "version": None,
                "feature": None, "problems": [p.as_dict() for p in exc.problems],
                "error": type(exc).__name__, "message": exc.message}
    return outcome.result(raw.get("edit_id"))


class Batch(BaseModel):
    """A batch as the document declares it; the route reads it itself, each edit in turn, so
    that one bad edit is rejected alone and never holds back the rest."""

    edits: list[SyncEdit | SyncCase] = Field(max_length=MAX_EDITS)
    outbox: Outbox | None = None


@router.post("/sync", summary="A tablet's outbox: one result per edit, in order",
             responses=errors(403, 413, 422), openapi_extra=json_body(Batch))
async def sync(request: Request, engine: EngineDep, user: UserDep) -> dict[str, Any]:
    """``{"edits": [...], "outbox": {...}}``: ``outbox`` (optional) is the device's count of the
    edits it still holds besides these, kept for the board's sync health."""
    reject_unknown(request.query_params, set())
    body = await read_json(request, MAX_BATCH)
    edits = body.get("edits") if isinstance(body, dict) else None
    if not isinstance(edits, list) or len(edits) > MAX_EDITS:
        raise Unprocessable(f"the body is {{\"edits\": [...]}} with at most {MAX_EDITS} edits",
                            [Problem("edits", None if edits is None else len(edits),
                                     f"a list of at most {MAX_EDITS} edits",
                                     f"edits 须为不超过 {MAX_EDITS} 条的列表")])
    unknown = sorted(set(body) - {"edits", "outbox"})
    if unknown:
        raise Unprocessable(f"unknown member {unknown[0]}; no edit was applied", [
            Problem(name, None, "not a member of a sync batch", "同步批次无此成员")
            for name in unknown])
    report = _outbox(body.get("outbox"))
    results = await run_in_threadpool(_apply_batch, engine, user, edits)
    for result in results:
        SYNC_EDITS.labels(result["status"]).inc()
    if report is not None:
        await run_in_threadpool(record, engine, user, report)
    return {"results": results}


def _scope_grids(user: User, asked: str | None) -> tuple[str, ...]:
    """A worker's own micro-grids (or some of them); others name the grids they want."""
    wanted = tuple(code for code in (asked or "").split(",") if code)
    if user.role == "worker":
        foreign = [code for code in wanted if code not in user.grids]
        if foreign:
            raise Forbidden(f"{user.name} answers for {', '.join(user.grids)} only",
                            [Problem("grids", code, "not one of your micro-grids",
                                     "不是您负责的微网格") for code in foreign])
        return wanted or user.grids
    if not wanted:
        raise InvalidInput("grids= names the micro-grids to take (a tablet never takes the "
                           "whole twin)", [Problem("grids", None, "required for this role",
                                                   "请指定微网格")])
    return wanted


@router.get("/sync/scope", summary="The features of my micro-grids (and a buffer) with their "
            "versions, or what changed since a cursor", response_class=Response,
            responses=media("application/json") | errors(403))
async def scope(
    request: Request,
    user: UserDep,
    since: Annotated[str | None, Query(description="the cursor of the previous answer")] = None,
    grids: Annotated[str | None, Query(description="micro-grid codes, comma-separated "
                                       "(a worker: default all of theirs)")] = None,
    buffer: Annotated[str | None, Query(description=f"metres around the grids "
                                        f"(default {DEFAULT_BUFFER_M:g})")] = None,
) -> Response:
    reject_unknown(request.query_params, {"since", "grids", "buffer"})
    cursor = None
    if since is not None:
        if not digits(since) or len(since) > 18:
            raise InvalidInput(f"since={since}: not a cursor", [Problem(
                "since", since, "the cursor of a previous answer", "无效的游标")])
        cursor = int(since)
    metres = DEFAULT_BUFFER_M
    if buffer is not None:
        try:
            metres = float(buffer)
        except ValueError:
            metres = -1
        if not 0 <= metres <= MAX_BUFFER_M:
            raise InvalidInput(f"buffer={buffer}: 0 to {MAX_BUFFER_M:g} metres", [Problem(
                "buffer", buffer, f"a number of metres from 0 to {MAX_BUFFER_M:g}",
                "缓冲距离无效")])
    wanted = Scope(_scope_grids(user, grids), editable_layers(user.role), metres)
    async with get_pool(request).connection() as conn:
        found = await read_scope(conn, wanted, cursor)
    body = (f'{{"cursor":"{found["cursor"]}","grids":{{"type":"FeatureCollection","features":'
            f'[{found["grids"]}]}},"features":{{"type":"FeatureCollection","features":'
            f'[{found["features"]}]}},"deleted":{found["deleted"]},"layers":{layers_json()}}}')
    return Response(body, media_type="application/json")


@router.get("/conflicts", summary="Edits held because the server changed the same fields: "
            "mine (a worker) or everyone's (an admin)")
def conflicts(request: Request, engine: EngineDep, user: UserDep,
              status: Literal["open", "resolved", "all"] = "open") -> dict[str, Any]:
    reject_unknown(request.query_params, {"status"})
    return {"conflicts": list_conflicts(engine, user, status)}


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choose: Literal["server", "mine"] | None = None
    values: dict[str, Any] | None = None
    reason: str | None = Field(default=None, max_length=MAX_REASON)


@router.post("/conflicts/{conflict_id}/resolve",
             summary="Keep the server's side, apply mine, or apply new values",
             responses=errors(403, 404, 409, 422))
def resolve(conflict_id: Id, resolution: Resolution, engine: EngineDep,
            user: UserDep) -> dict[str, Any]:
    if (resolution.choose is None) == (resolution.values is None):
        raise Unprocessable("give either choose (server or mine) or values", [Problem(
            "choose", resolution.choose, "exactly one of choose and values",
            "choose 与 values 须且仅须给出其一")])
    return resolve_conflict(engine, user, conflict_id, resolution.choose, resolution.values,
                            resolution.reason)


@router.get("/edits", summary="Every edit received, with its outcome: an admin sees all "
            "(rejected and refused ones too), anyone else their own")
def received(request: Request, engine: EngineDep, user: UserDep,
             status: Literal["applied", "merged", "conflict", "rejected"] | None = None,
             limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    reject_unknown(request.query_params, {"status", "limit"})
    return {"edits": received_edits(engine, user, status, limit)}
