"""12345 hotline work orders over HTTP: receive one (idempotent by order number), list them
(the queue of orders not placed, what waits for first contact, warnings, a figure's orders;
or CSV), read one with its ETag and events, place it by hand, move it along with
``If-Match``, extend its deadline, count the rates (``/orders/kpis``), the rules. The caller
is masked everywhere; ``/orders/{id}/caller`` gives a dispatcher the contact, and logs it."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Field

from api.deps import EngineDep, UserDep
from api.errors import SIGNED, errors, media
from api.openapi import json_body
from api.params import digits, id_number, reject_unknown
from api.routes.cases import GEOJSON, MAX_BODY, ONE_CASE, WRITE_REFUSED, Strict, parse_body
from api.routes.edits import based_on, read_json
from twin.errors import Forbidden, InvalidInput, NotFound, Problem
from twin.features.edits import MAX_REASON
from twin.hotline import loop
from twin.hotline.kpis import kpis
from twin.hotline.reads import (
    CSV_COLUMNS,
    OrderQuery,
    csv_rows,
    list_orders,
    order_events,
    order_feature,
    read_contact_log,
)
from twin.hotline.rules import hotline_rules
from twin.times import parse_day_or_time
from twin.users import User

# orders are read by staff, not by workers or departments outside their own (403)
router = APIRouter(tags=["hotline"], responses=errors(*SIGNED, 403))
# one order: its GeoJSON and ETag (as a case's); a step on it may be refused as a case's
ONE_ORDER = ONE_CASE
STEP_REFUSED = WRITE_REFUSED | errors(404, 412, 428)
_ETAG = re.compile(r'"order-(\d+)-(\d+)"')
LIST_PARAMS = {"state", "queued", "warning", "waiting", "late", "kind", "duty", "grid", "area",
               "department", "case", "from", "to", "figure", "limit", "offset", "f"}
READERS = ("dispatcher", "commander", "admin", "department", "worker", "planner")


class CallerBody(Strict):
    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=20)


class OrderBody(Strict):
    """An order as the city system exports it (or a dispatcher types it in)."""

    order_number: str = Field(max_length=64)
    received_at: AwareDatetime
    kind: str = Field(max_length=32)
    duty: str = Field(max_length=32)
    channel: str = Field(default="phone", max_length=16)
    category: str | None = Field(default=None, max_length=16)
    words: str = Field(default="", max_length=4000)
    address: str = Field(default="", max_length=300)
    caller: CallerBody | None = None
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)

    def order(self) -> loop.Order:
        return loop.Order(self.order_number, self.received_at, self.kind, self.duty,
                          self.channel, self.category, self.words, self.address,
                          self.caller.name if self.caller else None,
                          self.caller.phone if self.caller else None, self.lon, self.lat)


class MoveBody(Strict):
    to: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    approver: str | None = Field(default=None, max_length=100)
    verdict: str | None = Field(default=None, max_length=16)


class ExtendBody(Strict):
    by: str = Field(max_length=12, description="<n>h working hours or <n>d working days")
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    approver: str | None = Field(default=None, max_length=100)


class PlaceBody(Strict):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


def _order_id(raw: str) -> int:
    number = id_number(raw)
    if number is None:
        raise NotFound(f"no order {raw}", [Problem("id", raw, "not an order id", "无此工单")])
    return number


def _one(engine: Any, user: User, order_id: int, status: int = 200) -> Response:
    with engine.connect() as conn:
        order = order_feature(conn, order_id, user)
    return JSONResponse(order, status_code=status, media_type=GEOJSON, headers={
        "ETag": loop.order_etag(order_id, order["properties"]["version"])})


def _reader(user: User) -> None:
    if user.role not in READERS:
        raise Forbidden(f"a {user.role} does not read orders", [Problem(
            "role", user.role, "not a role that reads orders", "无权查看工单")])


@router.get("/orders/rules", summary="The hotline's rules: order kinds with handling limits, "
            "duties (首办, 兜底, 指定) with their clocks, repeat-call merging, the steps")
def rules(request: Request, engine: EngineDep, user: UserDep) -> dict[str, Any]:
    reject_unknown(request.query_params, set())
    with engine.connect() as conn:
        return hotline_rules(conn)


@router.get("/orders/kpis", summary="Accepted in time, first contact in time, handled on "
            "time (divided by the orders due), return-visit satisfaction, re-opened, repeat "
            "calls: in total and by grid, area, department, kind or duty, each figure linking "
            "to its orders", response_class=JSONResponse)
def order_kpis(request: Request, engine: EngineDep, user: UserDep,
               start: Annotated[str, Query(alias="from")],
               end: Annotated[str, Query(alias="to")], by: str | None = None) -> Response:
    reject_unknown(request.query_params, {"from", "to", "by"})
    _reader(user)
    zone = request.app.state.settings.time_zone
    with engine.connect() as conn:
        return JSONResponse(kpis(conn, _when(start, "from", zone), _when(end, "to", zone), by,
                                 f"{str(request.base_url).rstrip('/')}/orders"))


def _when(raw: str, name: str, zone: str) -> datetime:
    found = parse_day_or_time(name, raw, zone)
    assert found is not None
    return found


def _query(params: Any, zone: str) -> OrderQuery:
    def number(name: str, default: int) -> int:
        raw = params.get(name)
        if raw is None:
            return default
        if not digits(raw) or len(raw) > 9:
            raise InvalidInput(f"{name}={raw}: not a whole number", [Problem(
                name, raw, "a whole number", "须为整数")])
        return int(raw)

    def flag(name: str) -> bool | None:
        raw = params.get(name)
        if raw not in (None, "true", "false"):
            raise InvalidInput(f"{name}={raw}: true or false", [Problem(
                name, raw, "true or false", "须为 true 或 false")])
        return None if raw is None else raw == "true"

    if params.get("f") not in (None, "json", "geojson", "csv"):
        raise InvalidInput(f"f={params['f']}: one of json, geojson, csv", [Problem(
            "f", params["f"], "one of json, geojson, csv", "格式无效")])
    start = _when(params["from"], "from", zone) if params.get("from") else None
    end = _when(params["to"], "to", zone) if params.get("to") else None
    figure = params.get("figure")
    case = params.get("case")
    return OrderQuery(
        state=tuple(s for s in (params.get("state") or "").split(",") if s),
        queued=flag("queued"), warning=flag("warning"), waiting=params.get("waiting"),
        late=flag("late"), kind=params.get("kind"), duty=params.get("duty"),
        grid=params.get("grid"), area=params.get("area"), department=params.get("department"),
        case=number("case", 0) if case is not None else None,
        received_from=None if figure else start, received_to=None if figure else end,
        figure=figure, start=start if figure else None, end=end if figure else None,
        limit=number("limit", 100), offset=number("offset", 0))


@router.get("/orders", summary="Orders as a FeatureCollection (paged by limit/offset) or CSV: "
            "state, queued (not placed), warning, waiting (accept, contact, reply, visit), "
            "late, kind, duty, grid, area, department, case, from/to (received); "
            "figure=<name>&from&to lists a figure's orders. Callers masked.",
            response_class=Response, responses=media(GEOJSON, "text/csv"))
def orders(request: Request, engine: EngineDep, user: UserDep) -> Response:
    params = request.query_params
    reject_unknown(params, LIST_PARAMS)
    _reader(user)
    query = _query(params, request.app.state.settings.time_zone)
    with engine.connect() as conn:
        if params.get("f") == "csv":
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(csv_rows(conn, user, query))
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="orders.csv"'})
        return JSONResponse(list_orders(conn, user, query), media_type=GEOJSON)


@router.post("/orders", summary="Receive an order (dispatchers, admins): placed from its "
             "address, or queued for a person to place; again with the same order number "
             "updates what changed", status_code=201, response_class=JSONResponse,
             responses=media(GEOJSON, status=201, description="Received: its ETag") | ONE_ORDER
             | WRITE_REFUSED, openapi_extra=json_body(OrderBody))
async def create_order(request: Request, engine: EngineDep, user: UserDep) -> Response:
    reject_unknown(request.query_params, set())
    body = parse_body(OrderBody, await read_json(request, MAX_BODY), "工单")
    received = await run_in_threadpool(loop.receive, engine, user, body.order())
    response = await run_in_threadpool(_one, engine, user, received.id,
                                       201 if received.status == "created" else 200)
    response.headers["Location"] = f"{str(request.base_url).rstrip('/')}/orders/{received.id}"
    return response


@router.get("/orders/{order_id}", summary="One order: state, clocks (due per step), late, "
            "verdict, warning, its case, the steps it may take; caller masked; ETag",
            response_class=JSONResponse, responses=ONE_ORDER | errors(404))
def one_order(request: Request, order_id: str, engine: EngineDep, user: UserDep) -> Response:
    reject_unknown(request.query_params, set())
    _reader(user)
    return _one(engine, user, _order_id(order_id))


@router.get("/orders/{order_id}/events", summary="Every step of an order, oldest first",
            responses=errors(404))
def events(request: Request, order_id: str, engine: EngineDep, user: UserDep
           ) -> dict[str, Any]:
    reject_unknown(request.query_params, set())
    _reader(user)
    with engine.connect() as conn:
        return {"events": order_events(conn, _order_id(order_id), user)}


@router.get("/orders/{order_id}/caller", summary="The caller's name and phone, to call back "
            "(dispatchers only; every read is logged, with the purpose given)",
            responses=errors(404))
def order_caller(request: Request, order_id: str, engine: EngineDep, user: UserDep,
                 purpose: str | None = None) -> dict[str, Any]:
    reject_unknown(request.query_params, {"purpose"})
    if purpose is not None and len(purpose) > MAX_REASON:
        raise InvalidInput("purpose too long", [Problem(
            "purpose", len(purpose), f"at most {MAX_REASON} characters", "用途过长")])
    if user.role != "dispatcher":
        raise Forbidden(f"a {user.role} does not read callers' contacts (dispatchers do)", [
            Problem("role", user.role, "only dispatchers call back", "只有调度员可查看来电人信息")])
    return loop.caller(engine, user, _order_id(order_id), purpose)


def _base_version(request: Request, order_id: int) -> int:
    return based_on(request, _ETAG, order_id, "order", "工单", f'"order-{order_id}-<version>"')


@router.post("/orders/{order_id}/transitions", summary="A step: accept, contacted, replied, "
             "closed or reopened (the return visit's verdict), returned (退单: reason and "
             "approver); If-Match the order's ETag", response_class=JSONResponse,
             responses=ONE_ORDER | STEP_REFUSED, openapi_extra=json_body(MoveBody))
async def order_move(request: Request, order_id: str, engine: EngineDep, user: UserDep
                     ) -> Response:
    reject_unknown(request.query_params, set())
    number = _order_id(order_id)
    body = parse_body(MoveBody, await read_json(request, MAX_BODY), "流转")
    base = _base_version(request, number)
    step = loop.OrderMove(body.to, body.reason, body.approver, body.verdict)
    await run_in_threadpool(loop.move, engine, user, number, step, base)
    return await run_in_threadpool(_one, engine, user, number)


@router.post("/orders/{order_id}/extension", summary="Extend the handling deadline by <n>h or "
             "<n>d, with reason and approver (dispatchers); If-Match",
             response_class=JSONResponse, responses=ONE_ORDER | STEP_REFUSED,
             openapi_extra=json_body(ExtendBody))
async def order_extension(request: Request, order_id: str, engine: EngineDep, user: UserDep
                          ) -> Response:
    reject_unknown(request.query_params, set())
    number = _order_id(order_id)
    body = parse_body(ExtendBody, await read_json(request, MAX_BODY), "延期")
    base = _base_version(request, number)
    await run_in_threadpool(loop.extend, engine, user, number, body.by, body.reason,
                            body.approver, base)
    return await run_in_threadpool(_one, engine, user, number)


@router.post("/orders/{order_id}/place", summary="Place an order the twin could not place "
             "from its address (the queue): lon, lat; dispatchers; If-Match",
             response_class=JSONResponse, responses=ONE_ORDER | STEP_REFUSED,
             openapi_extra=json_body(PlaceBody))
async def order_place(request: Request, order_id: str, engine: EngineDep, user: UserDep
                      ) -> Response:
    reject_unknown(request.query_params, set())
    number = _order_id(order_id)
    body = parse_body(PlaceBody, await read_json(request, MAX_BODY), "定位")
    base = _base_version(request, number)
    await run_in_threadpool(loop.place, engine, user, number, body.lon, body.lat, base)
    return await run_in_threadpool(_one, engine, user, number)


@router.get("/contact-log", summary="Who read, wrote or erased callers' contacts, newest "
            "first (admins)")
def contact_log(request: Request, engine: EngineDep, user: UserDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    reject_unknown(request.query_params, {"limit"})
    if user.role != "admin":
        raise Forbidden("only admins read the contact log", [Problem(
            "role", user.role, "admins only", "只有管理员可查看")])
    with engine.connect() as conn:
        return {"entries": read_contact_log(conn, limit)}
