"""Cases (一网统管) over HTTP: report, list (paged like OGC API items, or CSV), read one with
its ETag and events, move it along with ``If-Match``, extend its deadline, count it
(``/cases/kpis``), and the categories with their stage limits. A tablet's case reports and
moves travel in the sync batch (``"layer": "cases"``), parsed here too."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from api.deps import EngineDep, UserDep
from api.errors import SIGNED, errors, media, twin_error_response
from api.openapi import json_body
from api.params import INTEGER, MAX_ID, digits, id_number, reject_unknown
from api.routes.edits import based_on, read_json
from twin.cases.kpis import check_period, kpi_where, kpis
from twin.cases.loop import (
    Extension,
    Move,
    Position,
    Report,
    Sent,
    case_etag,
    extend,
    report,
    transition,
)
from twin.cases.reads import STATES, CaseQuery, case_events, csv_rows, get_case, list_cases
from twin.cases.rules import categories, transitions
from twin.errors import (
    InvalidInput,
    NotFound,
    Problem,
    Unprocessable,
)
from twin.features.edits import MAX_KEY, MAX_REASON, Outcome
from twin.times import instant, parse_day_or_time
from twin.users import User

router = APIRouter(tags=["cases"], responses=errors(*SIGNED))
GEOJSON = "application/geo+json"
# one case: its GeoJSON and ETag; what a write on it may be refused with besides
ONE_CASE = media(GEOJSON)
WRITE_REFUSED = errors(403, 409, 413, 422)
MAX_BODY = 256 * 1024
_ETAG = re.compile(r'"case-(\d+)-(\d+)"')
LIST_PARAMS = {"bbox", "state", "overdue", "category", "micro_grid", "residential_area",
               "department", "assignee", "source", "datetime", "asOf", "limit", "cursor", "f",
               "kpi", "from", "to", "by", "key"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PositionBody(Strict):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    accuracy_m: float | None = Field(default=None, ge=0)


class FeatureRef(Strict):
    layer: str = Field(max_length=64)
    id: int = Field(ge=1, le=MAX_ID)


class ReportProperties(Strict):
    category: str = Field(max_length=16)
    description: str = Field(default="", max_length=2000)
    source: str | None = Field(default=None, max_length=16)
    priority: str = "normal"
    feature: FeatureRef | None = None
    photos: list[str] = Field(default_factory=list, max_length=10)
    order_number: str | None = Field(default=None, max_length=64)


class PointBody(Strict):
    type: Literal["Point"]
    coordinates: tuple[float, float]


class ReportBody(Strict):
    """A GeoJSON Feature: the case's place and its properties."""

    type: Literal["Feature"]
    geometry: PointBody
    properties: ReportProperties
    device_time: AwareDatetime | None = None
    device_id: str | None = Field(default=None, max_length=MAX_KEY)

    def report(self) -> Report:
        p = self.properties
        lon, lat = self.geometry.coordinates
        return Report(lon, lat, p.category, p.source, p.description, p.priority,
                      (p.feature.layer, p.feature.id) if p.feature else None, tuple(p.photos),
                      p.order_number)


class TransitionBody(Strict):
    """A move: the state to go to and what it carries."""

    to: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    assignee: str | None = Field(default=None, max_length=64)
    department: str | None = Field(default=None, max_length=32)
    approver: str | None = Field(default=None, max_length=64)
    duplicate_of: int | None = Field(default=None, ge=1, le=MAX_ID)
    photos: list[str] = Field(default_factory=list, max_length=10)
    position: PositionBody | None = None
    device_time: AwareDatetime | None = None
    device_id: str | None = Field(default=None, max_length=MAX_KEY)

    def move(self, seen_state: str | None = None) -> Move:
        pos = self.position
        return Move(self.to, self.reason, self.assignee, self.department, self.approver,
                    self.duplicate_of, tuple(self.photos),
                    Position(pos.lon, pos.lat, pos.accuracy_m) if pos else None, seen_state)


class ExtensionBody(Strict):
    decision: Literal["request", "approve", "refuse"]
    limit: str | None = Field(default=None, max_length=12,
                              description="<n>h working hours or <n>d working days")
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    device_time: AwareDatetime | None = None
    device_id: str | None = Field(default=None, max_length=MAX_KEY)


def parse_body(model: type[Strict], raw: Any, what: str) -> Any:
    """A body checked by its model; each problem named (422)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [Problem(".".join(str(p) for p in e["loc"]) or "body", e.get("input"),
                            e["msg"], f"{what}格式错误") for e in exc.errors(include_url=False)]
        raise Unprocessable("; ".join(f"{p.field}: {p.reason}" for p in problems),
                            problems) from None


def _sent(request: Request, body: Any) -> Sent:
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_KEY:
        raise InvalidInput(f"Idempotency-Key must have 1 to {MAX_KEY} characters", [Problem(
            "Idempotency-Key", key, f"1 to {MAX_KEY} characters", f"幂等键长度须为1至{MAX_KEY}")])
    return Sent(key, body.device_id, None, body.device_time)


def _case_id(raw: str) -> int:
    number = id_number(raw)
    if number is None:
        raise NotFound(f"no case {raw}", [Problem("id", raw, "not a case id", "无此案件")])
    return number


def _base_version(request: Request, case_id: int) -> int:
    return based_on(request, _ETAG, case_id, "case", "案件", f'"case-{case_id}-<version>"')


def _answer(outcome: Outcome, request: Request) -> Response:
    """The HTTP answer of an outcome (a retried request's is its first one's)."""
    if outcome.refusal is not None:
        return twin_error_response(outcome.refusal, request)
    case = outcome.feature or {}
    headers = {"ETag": case_etag(case["id"], case["properties"]["version"])}
    if outcome.created:
        headers["Location"] = f"{str(request.base_url).rstrip('/')}/cases/{case['id']}"
    return JSONResponse(case, status_code=201 if outcome.created else 200,
                        media_type=GEOJSON, headers=headers)


@router.get("/cases/categories", summary="Case categories with their stage limits in working "
            "time, and the lifecycle's transitions")
def case_categories(request: Request, engine: EngineDep, user: UserDep) -> dict[str, Any]:
    reject_unknown(request.query_params, set())
    with engine.connect() as conn:
        return {"categories": categories(conn), "transitions": transitions(conn)}


@router.get("/cases/kpis", summary="Filed, due, closed, closed on time, rates (divided by the "
            "cases due), rework, overdue: in total and by grid, area, department, category or "
            "source, each figure linking to its cases")
def case_kpis(request: Request, engine: EngineDep, user: UserDep,
              start: Annotated[str, Query(alias="from")], end: Annotated[str, Query(alias="to")],
              by: str | None = None) -> Response:
    reject_unknown(request.query_params, {"from", "to", "by"})
    zone = request.app.state.settings.time_zone
    period = check_period(_day_or_time(start, "from", zone), _day_or_time(end, "to", zone))
    # JSON values only: written as they are (FastAPI's encoder walked thousands of groups)
    return JSONResponse(kpis(engine, user, period, by,
                             f"{str(request.base_url).rstrip('/')}/cases"))


def _day_or_time(raw: str, name: str, zone: str) -> datetime:
    """A plain date is that day's start where the subdistrict counts its days."""
    found = parse_day_or_time(name, raw, zone)
    assert found is not None
    return found


def _interval(raw: str) -> tuple[datetime | None, datetime | None]:
    """``datetime``: an instant, or ``start/end`` with ``..`` for an open end."""
    start, _, end = raw.partition("/")
    if not _:
        moment = instant(raw, "datetime")
        return moment, moment
    return (None if start in ("", "..") else instant(start, "datetime", raw),
            None if end in ("", "..") else instant(end, "datetime", raw))


@router.get("/cases", summary="Cases as a FeatureCollection (cursor-paged) or CSV: bbox, "
            "state, overdue, category, micro_grid, residential_area, department, assignee, "
            "source, datetime (reported), asOf; kpi=<figure>&from&to[&by&key] lists a figure's "
            "cases", response_class=Response,
            responses=media(GEOJSON, "text/csv") | errors(403))
def cases(request: Request, engine: EngineDep, user: UserDep) -> Response:
    params = request.query_params
    reject_unknown(params, LIST_PARAMS)
    query = _query(params, request.app.state.settings.time_zone)
    found = list_cases(engine, user, query)
    base = f"{str(request.base_url).rstrip('/')}/cases"
    if params.get("f") == "csv":
        rows = csv_rows(found)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="cases.csv"'})
    links = [{"rel": "self", "href": str(request.url), "type": GEOJSON}]
    if found["next"] is not None:
        rest = {k: v for k, v in params.items() if k != "cursor"}
        links.append({"rel": "next", "type": GEOJSON,
                      "href": f"{base}?{urlencode({**rest, 'cursor': found['next']})}"})
    body = {k: v for k, v in found.items() if k != "next"} | {"links": links}
    return JSONResponse(body, media_type=GEOJSON)


def _query(params: Any, zone: str) -> CaseQuery:
    """The list's parameters, each checked (400 naming it)."""
    def number(name: str, default: int) -> int:
        raw = params.get(name)
        if raw is None:
            return default
        if not digits(raw) or len(raw) > 18:
            raise InvalidInput(f"{name}={raw}: not a whole number", [Problem(
                name, raw, "a whole number", "须为整数")])
        return int(raw)

    f = params.get("f")
    if f not in (None, "json", "geojson", "csv"):
        raise InvalidInput(f"f={f}: one of json, geojson, csv", [Problem(
            "f", f, "one of json, geojson, csv", "格式无效")])
    bbox = None
    if params.get("bbox"):
        try:
            values = tuple(float(v) for v in params["bbox"].split(","))
        except ValueError:
            values = ()
        if len(values) != 4 or values[0] > values[2] or values[1] > values[3]:
            raise InvalidInput("bbox: minLon,minLat,maxLon,maxLat", [Problem(
                "bbox", params["bbox"], "four numbers: minLon,minLat,maxLon,maxLat",
                "bbox 须为四个数")])
        bbox = (values[0], values[1], values[2], values[3])
    overdue = params.get("overdue")
    if overdue not in (None, "true", "false"):
        raise InvalidInput(f"overdue={overdue}: true or false", [Problem(
            "overdue", overdue, "true or false", "须为 true 或 false")])
    states = tuple(s for s in (params.get("state") or "").split(",") if s)
    bad_states = [s for s in states if s not in STATES]
    if bad_states:
        raise InvalidInput(f"state={bad_states[0]}: unknown", [Problem(
            "state", bad_states[0], f"one of {', '.join(STATES)}", "状态无效")])
    reported = None
    if params.get("datetime"):
        reported = _interval(params["datetime"])
    as_of = instant(params["asOf"], "asOf") if params.get("asOf") else None
    where = None
    if params.get("kpi"):
        if not (params.get("from") and params.get("to")):
            raise InvalidInput("kpi needs from and to", [Problem(
                "from", params.get("from"), "the period of the figure", "须给出统计期")])
        period = check_period(_day_or_time(params["from"], "from", zone),
                              _day_or_time(params["to"], "to", zone))
        where = kpi_where(params["kpi"], period, params.get("by"), params.get("key"))
        as_of = None if period.upto >= datetime.now(period.upto.tzinfo) else period.upto
    elif any(params.get(k) for k in ("from", "to", "by", "key")):
        raise InvalidInput("from, to, by and key go with kpi", [Problem(
            "kpi", None, "required with from, to, by, key", "须同时给出 kpi")])
    return CaseQuery(bbox, states, None if overdue is None else overdue == "true",
                     params.get("category"), params.get("micro_grid"),
                     params.get("residential_area"), params.get("department"),
                     params.get("assignee"), params.get("source"), reported, as_of, where,
                     number("limit", 100), number("cursor", 0))


@router.post("/cases", summary="Report a case: a GeoJSON Feature (Point) with category, "
             "description, source, priority, feature, photos; Idempotency-Key honoured",
             status_code=201, response_class=JSONResponse,
             responses=media(GEOJSON, status=201, description="Reported: its Location and "
                             "ETag") | WRITE_REFUSED, openapi_extra=json_body(ReportBody))
async def create_case(request: Request, engine: EngineDep, user: UserDep) -> Response:
    reject_unknown(request.query_params, set())
    body = parse_body(ReportBody, await read_json(request, MAX_BODY), "案件")
    outcome = await run_in_threadpool(report, engine, user, body.report(), _sent(request, body))
    return _answer(outcome, request)


@router.get("/cases/{case_id}", summary="One case: state, place, who has it, deadlines per "
            "stage, overdue, version (ETag); asOf reads it as it was",
            response_class=JSONResponse, responses=ONE_CASE | errors(403, 404))
def one_case(request: Request, case_id: str, engine: EngineDep, user: UserDep,
             as_of: Annotated[str | None, Query(alias="asOf")] = None) -> Response:
    reject_unknown(request.query_params, {"asOf"})
    when = instant(as_of, "asOf") if as_of else None
    case = get_case(engine, user, _case_id(case_id), when)
    return JSONResponse(case, media_type=GEOJSON, headers={
        "ETag": case_etag(case["id"], case["properties"]["version"])})


@router.get("/cases/{case_id}/events", summary="Every step of a case, oldest first",
            responses=errors(403, 404))
def events(request: Request, case_id: str, engine: EngineDep, user: UserDep
           ) -> dict[str, Any]:
    reject_unknown(request.query_params, set())
    return {"events": case_events(engine, user, _case_id(case_id))}


async def _act(request: Request, case_id: str, model: type[Strict], what: str,
               run: Callable[[int, int, Any], Outcome]) -> Response:
    """A write on one case: its id, the version If-Match names, the body checked by
    ``model``; ``run(id, version, body)`` in a worker thread."""
    reject_unknown(request.query_params, set())
    number = _case_id(case_id)
    base = _base_version(request, number)
    body = parse_body(model, await read_json(request, MAX_BODY), what)
    return _answer(await run_in_threadpool(run, number, base, body), request)


@router.post("/cases/{case_id}/transitions", summary="Move a case (If-Match required): 409 "
             "names the moves allowed; 422 a broken rule", response_class=JSONResponse,
             responses=ONE_CASE | WRITE_REFUSED | errors(404, 412, 428),
             openapi_extra=json_body(TransitionBody))
async def move_case(request: Request, case_id: str, engine: EngineDep, user: UserDep
                    ) -> Response:
    return await _act(request, case_id, TransitionBody, "流转", lambda number, base, body:
                      transition(engine, user, number, body.move(), base, False,
                                 _sent(request, body)))


@router.post("/cases/{case_id}/extension", summary="Ask for more time on the running stage, "
             "or approve or refuse what was asked (If-Match required)",
             response_class=JSONResponse,
             responses=ONE_CASE | WRITE_REFUSED | errors(404, 412, 428),
             openapi_extra=json_body(ExtensionBody))
async def extension(request: Request, case_id: str, engine: EngineDep, user: UserDep
                    ) -> Response:
    return await _act(request, case_id, ExtensionBody, "延期", lambda number, base, body:
                      extend(engine, user, number, Extension(body.decision, body.limit,
                                                             body.reason), base,
                             _sent(request, body)))


# ---------------------------------------------------------------------------------------
# The sync batch

class SyncCase(Strict):
    """A case report or move in a tablet's sync batch."""

    edit_id: str = Field(min_length=1, max_length=MAX_KEY)
    device_id: str | None = Field(default=None, max_length=MAX_KEY)
    device_seq: int | None = Field(default=None, ge=0, le=MAX_ID)
    layer: Literal["cases"]
    feature_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    op: Literal["create", "transition"]
    base_version: int | None = Field(default=None, ge=1, le=INTEGER)
    changes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    device_time: AwareDatetime | None = None
    accuracy_m: float | None = Field(default=None, ge=0)


def sync_case(engine: Engine, user: User, raw: dict[str, Any]) -> Outcome:
    """Apply one case item of a sync batch (its answer like a feature edit's)."""
    item = parse_body(SyncCase, raw, "同步条目")
    new = {k: c.get("new") for k, c in item.changes.items()}
    sent = Sent(item.edit_id, item.device_id, item.device_seq, item.device_time)
    if item.op == "create":
        geometry = new.pop("geometry", None)
        body = parse_body(ReportBody, {"type": "Feature", "geometry": geometry,
                                       "properties": new}, "案件")
        return report(engine, user, body.report(), sent)
    state = item.changes.get("state") or {}
    if item.feature_id is None or not isinstance(state.get("new"), str):
        raise Unprocessable("a case transition names the case (feature_id) and the state it "
                            "goes to (changes.state.new)", [Problem(
                                "changes.state", state, "{\"old\": seen, \"new\": to}",
                                "须给出案件编号与目标状态")])
    new.pop("state")
    if item.accuracy_m is not None and isinstance(new.get("position"), dict):
        new["position"].setdefault("accuracy_m", item.accuracy_m)
    body = parse_body(TransitionBody, {"to": state["new"], "reason": item.reason, **new},
                      "流转")
    return transition(engine, user, item.feature_id, body.move(state.get("old")),
                      item.base_version, True, sent)
