"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) over the hotline's orders, for
outside systems and residents' apps: the services (the active case categories), requests
(orders, public: never a caller's name or phone) filtered as the spec says, and filing a
request as an order of the client's (channel "open311") through the hotline's own loop.

Errors are the domain's (twin.errors); the API turns them into the spec's error list.
"""

# SQL here is composed of fixed fragments; every value is bound.
# ruff: noqa: S608
from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from twin.errors import Forbidden, InvalidInput, NotFound, Problem
from twin.hotline import loop
from twin.hotline.clients import MAX_NAME, client_for_key
from twin.hotline.reads import LATE
from twin.times import parse_day_or_time
from twin.users import User

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
MAX_SPAN = timedelta(days=90)  # the spec's longest start_date..end_date, and the default
MAX_REQUESTS = 1000  # newest first; a longer list is cut (the spec leaves paging out)
MAX_IDS = 1000
DEFAULT_KIND = "help"  # 求助: a request filed through Open311 asks for something done
DUTY = "first"  # 首办: the subdistrict answers for what it is sent first
CLOSED = ("closed", "returned")  # an order's states that are a request's status "closed"
# An order's state as a request's status_notes (Chinese, then English).
STATE_NAMES = {
    "received": "已受理 received", "accepted": "已签收 accepted",
    "contacted": "已先行联系 caller contacted", "replied": "已答复 replied",
    "closed": "已办结 closed", "reopened": "重办中 re-opened for re-handling",
    "returned": "已退单 sent back",
}
# The form fields of POST requests this service reads (others, such as email, device_id or
# media_url, are accepted and not kept: the twin keeps no e-mail addresses or media).
_ATTRIBUTE = re.compile(r"attribute\[(.+)\]")
_ID = re.compile(r"[0-9]{1,18}")

SERVICE_SQL = """json_build_object(
    'service_code', c.code, 'service_name', c.name_zh || ' ' || c.name_en,
    'description', concat_ws(' ', nullif(c.file_when_zh, ''), nullif(c.file_when_en, '')),
    'metadata', false, 'type', 'realtime', 'keywords', '', 'group', c.major_zh)"""


def _time(column: str) -> str:
    """A W3C date-time of a timestamptz column, in the transaction's time zone."""
    return f"""to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM')"""


# One order o (its category c, department d) as a request, never with its caller.
REQUEST_SQL = f"""
    'service_request_id', o.id::text,
    'status', CASE WHEN o.state = ANY(:closed) THEN 'closed' ELSE 'open' END,
    'status_notes', CAST(:state_names AS jsonb) ->> o.state,
    'service_name', c.name_zh || ' ' || c.name_en,
    'service_code', o.category,
    'description', o.words,
    'agency_responsible', d.name_zh || ' ' || d.name_en,
    'service_notice', NULL,
    'requested_datetime', {_time('o.received_at')},
    'updated_datetime', {_time('o.changed_at')},
    'expected_datetime', {_time('coalesce(o.rehandle_due, o.handle_due)')},
    'address', o.address, 'address_id', NULL, 'zipcode', NULL,
    'lat', round(ST_Y(o.geom)::numeric, 7), 'long', round(ST_X(o.geom)::numeric, 7),
    'media_url', NULL"""
EXTENDED_SQL = f""",
    'extended_attributes', json_build_object(
        'state', o.state, 'kind', o.kind, 'duty', o.duty, 'case', o.case_id,
        'micro_grid', o.grid_code, 'late', {LATE}, 'warning', o.warning)"""
REQUEST_FROM = """twin.orders o LEFT JOIN twin.case_categories c ON c.code = o.category
    LEFT JOIN twin.departments d ON d.code = o.department"""


# ---------------------------------------------------------------------------------------
# Services

def services(conn: Connection) -> list[dict[str, Any]]:
    """The services a request may be filed under: the active case categories."""
    found: list[dict[str, Any]] = conn.execute(text(
        f"SELECT coalesce(json_agg({SERVICE_SQL} ORDER BY c.code), '[]') "
        "FROM twin.case_categories c WHERE c.active")).scalar_one()
    return found


def service_definition(conn: Connection, code: str) -> dict[str, Any]:
    """A service's definition: its code, and no attributes (no service has metadata)."""
    if not _active_service(conn, code):
        raise NotFound(f"no service {code}", [Problem(
            "service_code", code, "no active service has this code", "无此服务类别")])
    return {"service_code": code, "attributes": []}


def _active_service(conn: Connection, code: str) -> bool:
    return bool(conn.execute(text(
        "SELECT EXISTS (SELECT FROM twin.case_categories WHERE code = :c AND active)"),
        {"c": code}).scalar())


# ---------------------------------------------------------------------------------------
# Reading requests

@dataclass(frozen=True)
class RequestQuery:
    """GET requests' filters: ids (which override the rest), or codes, a period, status."""

    ids: tuple[int, ...] = ()
    service_codes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    status: tuple[str, ...] = ()
    extensions: bool = False


def _bad(name: str, value: Any, reason: str, reason_zh: str) -> InvalidInput:
    return InvalidInput(f"{name}={value}: {reason}", [Problem(name, value, reason, reason_zh)])


def _listed(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def extensions_flag(raw: str | None) -> bool:
    """The ``extensions`` parameter: Twin's finer state in ``extended_attributes``."""
    if raw not in (None, "true", "false"):
        raise _bad("extensions", raw, "true or false", "须为 true 或 false")
    return raw == "true"


def request_query(params: Mapping[str, str], now: datetime, zone: str) -> RequestQuery:
    """GET requests' parameters as the spec reads them: comma lists of ids, service codes
    and statuses (open, closed); start_date and end_date (W3C times, or days in ``zone``)
    at most 90 days apart, by default the 90 days up to ``now``."""
    extensions = extensions_flag(params.get("extensions"))
    ids = _listed(params.get("service_request_id"))
    if ids:
        if len(ids) > MAX_IDS:
            raise _bad("service_request_id", len(ids), f"at most {MAX_IDS} ids",
                       f"最多{MAX_IDS}个")
        for one in ids:
            if not _ID.fullmatch(one):
                raise _bad("service_request_id", one, "not a service request id", "请求编号无效")
        return RequestQuery(ids=tuple(int(one) for one in ids), extensions=extensions)
    status = _listed(params.get("status"))
    for one in status:
        if one not in ("open", "closed"):
            raise _bad("status", one, "open or closed", "状态须为 open 或 closed")
    start = parse_day_or_time("start_date", params.get("start_date"), zone)
    end = parse_day_or_time("end_date", params.get("end_date"), zone)
    if start is None:
        end = end or now
        start = end - MAX_SPAN
    elif end is None:
        end = start + MAX_SPAN
    if end < start:
        raise _bad("end_date", params.get("end_date"), "before start_date", "结束时间早于开始时间")
    if end - start > MAX_SPAN:
        raise _bad("end_date", params.get("end_date"), "more than 90 days after start_date",
                   "查询时间跨度不得超过90天")
    return RequestQuery(service_codes=_listed(params.get("service_code")), start=start,
                        end=end, status=status, extensions=extensions)


def _requests(conn: Connection, where: str, params: dict[str, Any], zone: str,
              extensions: bool) -> list[dict[str, Any]]:
    # the W3C times are written in the subdistrict's zone (this transaction only)
    conn.execute(text("SELECT set_config('TimeZone', :zone, true)"), {"zone": zone})
    rows: list[dict[str, Any]] = conn.execute(text(f"""
        SELECT coalesce(json_agg(r ORDER BY rt DESC, id DESC), '[]') FROM (
            SELECT json_build_object({REQUEST_SQL}{EXTENDED_SQL if extensions else ''}) AS r,
                   o.received_at AS rt, o.id
              FROM {REQUEST_FROM} WHERE {where}
             ORDER BY o.received_at DESC, o.id DESC LIMIT :max) p"""),
        params | {"state_names": json.dumps(STATE_NAMES), "closed": list(CLOSED),
                  "max": MAX_REQUESTS}).scalar_one()
    return rows


def request_rows(conn: Connection, query: RequestQuery, zone: str) -> list[dict[str, Any]]:
    """The orders a query names, as GeoReport requests, newest first (at most
    MAX_REQUESTS)."""
    if query.ids:
        return _requests(conn, "o.id = ANY(:ids)", {"ids": list(query.ids)}, zone,
                         query.extensions)
    parts = ["o.received_at BETWEEN :start AND :end"]
    params: dict[str, Any] = {"start": query.start, "end": query.end}
    if query.service_codes:
        parts.append("o.category = ANY(:codes)")
        params["codes"] = list(query.service_codes)
    if set(query.status) == {"open"}:
        parts.append("o.state <> ALL(:closed)")
    elif set(query.status) == {"closed"}:
        parts.append("o.state = ANY(:closed)")
    return _requests(conn, " AND ".join(parts), params, zone, query.extensions)


def request_row(conn: Connection, raw_id: str, zone: str, extensions: bool = False
                ) -> dict[str, Any]:
    """One request by its id (404 when there is no such order)."""
    found = []
    if _ID.fullmatch(raw_id):
        found = _requests(conn, "o.id = :id", {"id": int(raw_id)}, zone, extensions)
    if not found:
        raise NotFound(f"no service request {raw_id}", [Problem(
            "service_request_id", raw_id, "no such service request", "无此服务请求")])
    return found[0]


# ---------------------------------------------------------------------------------------
# Filing a request

@dataclass(frozen=True)
class NewRequest:
    """A request as a client files it (the spec's POST form), checked."""

    service_code: str
    lon: float | None
    lat: float | None
    address: str
    description: str
    caller_name: str | None
    phone: str | None
    kind: str | None  # attribute[kind], as sent


def _coordinate(form: Mapping[str, str], name: str, limit: float,
                problems: list[Problem]) -> float | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and -limit <= value <= limit):
        problems.append(Problem(name, raw, f"a number from -{limit:g} to {limit:g} (WGS84)",
                                "坐标无效"))
        return None
    return value


def _caller_name(first: str, last: str) -> str | None:
    """first_name and last_name as one name: 张 + 三 -> 张三 (family name first, as Chinese
    names are written), Anna + Li -> Anna Li."""
    if not first or not last:
        return first or last or None
    if re.fullmatch(r"[\u4e00-\u9fff·]+", first + last):
        return last + first
    return f"{first} {last}"


def new_request(form: Mapping[str, str]) -> NewRequest:
    """The spec's POST form read: service_code; lat and long, or address_string; description,
    first_name, last_name, phone, attribute[kind]. Every problem named (400)."""
    problems: list[Problem] = []
    for field, value in form.items():
        if "\x00" in value:
            problems.append(Problem(field, None, "NUL characters are not allowed",
                                    "不得包含 NUL 字符"))
    if problems:
        raise InvalidInput(f"{problems[0].field}: {problems[0].reason}", problems)
    code = form.get("service_code", "").strip()
    if not code:
        problems.append(Problem("service_code", None, "required: GET services.json lists them",
                                "须填写服务类别"))
    lat = _coordinate(form, "lat", 90, problems)
    lon = _coordinate(form, "long", 180, problems)
    has_lat, has_long = bool(form.get("lat", "").strip()), bool(form.get("long", "").strip())
    if has_lat != has_long:
        problems.append(Problem("lat" if has_long else "long", None,
                                "lat and long are sent together", "经纬度须同时提供"))
    address = form.get("address_string", "").strip()
    if len(address) > loop.MAX_ADDRESS:
        problems.append(Problem("address_string", len(address),
                                f"at most {loop.MAX_ADDRESS} characters", "地址过长"))
    if not (has_lat and has_long) and not address:
        problems.append(Problem("address_string", None,
                                "where it is: lat and long, or address_string, are required"
                                + (" (address_id is not supported)" if form.get("address_id")
                                   else ""), "须提供经纬度或地址"))
    description = form.get("description", "")
    if len(description) > loop.MAX_WORDS:
        problems.append(Problem("description", len(description),
                                f"at most {loop.MAX_WORDS} characters", "描述过长"))
    name = _caller_name(form.get("first_name", "").strip(), form.get("last_name", "").strip())
    if name is not None and len(name) > 100:
        problems.append(Problem("first_name", "***", "the name has at most 100 characters",
                                "姓名过长"))
    phone = form.get("phone", "").strip() or None
    if phone is not None and not loop.PHONE.fullmatch(phone):
        problems.append(Problem("phone", "***", "3-20 digits, spaces, '+' or '-'",
                                "电话号码格式错误"))
    if problems:
        raise InvalidInput(f"{problems[0].field}: {problems[0].reason}", problems)
    kind = next((value for key, value in form.items()
                 if (m := _ATTRIBUTE.fullmatch(key)) and m.group(1) == "kind"), None)
    return NewRequest(code, lon, lat, address, description, name, phone, kind)


def order_number(client: str) -> str:
    """A new order number of a client's: O311-<client>-<16 random hex digits>."""
    return f"O311-{client[:MAX_NAME]}-{secrets.token_hex(8)}"


def file_request(engine: Engine, form: Mapping[str, str]) -> list[dict[str, Any]]:
    """File the request of a POST form as an order of the client whose ``api_key`` it
    carries (403 without an active one); the spec's answer. All or nothing."""
    key = form.get("api_key", "")
    with engine.begin() as conn:
        client = client_for_key(conn, key) if key else None
        if client is None:
            raise Forbidden("api_key missing or not valid", [Problem(
                "api_key", None, "an active client's API key is required to file requests",
                "API 密钥缺失或无效")])
        request = new_request(form)
        if not _active_service(conn, request.service_code):
            raise _bad("service_code", request.service_code,
                       "no active service has this code: GET services.json lists them",
                       "无此服务类别")
        if request.lon is not None and conn.execute(text(
                "SELECT twin.code_at('micro_grids', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
                " IS NULL"), {"lon": request.lon, "lat": request.lat}).scalar():
            raise _bad("lat", request.lat, "the position is outside the subdistrict",
                       "位置不在本街道范围内")
        kinds = set(conn.execute(text("SELECT code FROM twin.order_kinds")).scalars())
        number = order_number(client)
        order = loop.Order(
            order_number=number, received_at=datetime.now(UTC),
            kind=request.kind if request.kind and request.kind in kinds else DEFAULT_KIND,
            duty=DUTY,
            channel="open311", category=request.service_code, words=request.description,
            address=request.address, caller_name=request.caller_name,
            caller_phone=request.phone, lon=request.lon, lat=request.lat)
        user = User(id=0, name=f"open311:{client}", role="dispatcher", grids=())
        received = loop.receive_orders(conn, user, [order])[0]
    placed = request.lon is not None or (received.placement is not None
                                         and received.placement.placed)
    notice = f"已受理,工单号 {number}. Received as order {number}." + (
        "" if placed else " 地址待人工定位 The address will be placed by a dispatcher.")
    return [{"service_request_id": str(received.id), "service_notice": notice,
             "account_id": None}]
