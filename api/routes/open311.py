"""Open311 GeoReport v2 at /open311/v2/ (http://wiki.open311.org/GeoReport_v2), in JSON and
XML: discovery, the services, requests read (public, as the spec has it: no key, nothing
personal) and filed (a client's ``api_key``, form-encoded). Errors here are the spec's list,
``[{"code": 400, "description": "..."}]``, with the same HTTP status."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element, SubElement, tostring

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.deps import EngineDep
from api.errors import STATUS, WHY, unexpected_response
from api.params import reject_unknown
from twin.errors import InvalidInput, NotFound, Problem, TooLarge, TwinError
from twin.hotline.open311 import (
    SPECIFICATION,
    extensions_flag,
    file_request,
    request_query,
    request_row,
    request_rows,
    service_definition,
    services,
)

ROOT = "/open311/v2"
FORMATS = {"json": "application/json", "xml": "text/xml; charset=utf-8"}
CHANGESET = "2026-12-07T00:00:00Z"  # when this endpoint last changed (discovery)
MAX_FORM = 64 * 1024
FORM = "application/x-www-form-urlencoded"
# sent by many clients on every call; one endpoint serves one jurisdiction
IGNORED = {"jurisdiction_id", "api_key"}
REQUEST_PARAMS = {"service_request_id", "service_code", "start_date", "end_date", "status",
                  "extensions"} | IGNORED
# the XML element of each item of a list, by the list's element
ITEM = {"services": "service", "service_requests": "request", "errors": "error",
        "endpoints": "endpoint", "formats": "format", "attributes": "attribute"}


def _spec_errors(exc: TwinError, xml: bool) -> Response:
    """A domain error as the spec's error list, one entry per problem."""
    status = next((v[0] for k, v in STATUS.items() if isinstance(exc, k)), 400)
    status = 400 if status == 422 else status  # the spec knows 400 for every bad input
    errors = [{"code": status, "description": f"{p.field}: {p.reason}"
               + (f" ({p.reason_zh})" if p.reason_zh else "")} for p in exc.problems] \
        or [{"code": status, "description": exc.message}]
    return _answer(errors, "xml" if xml else "json", "errors", status)


class SpecErrors(APIRoute):
    """Routes whose errors, whatever raised them, come back as the spec's error list."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            xml = request.url.path.endswith(".xml")
            try:
                return await handler(request)
            except TwinError as exc:
                return _spec_errors(exc, xml)
            except RequestValidationError as exc:
                return _spec_errors(InvalidInput("bad request", [Problem(
                    ".".join(str(p) for p in e["loc"]), None, e["msg"]) for e in exc.errors()]),
                    xml)
            except HTTPException as exc:
                return _answer([{"code": exc.status_code, "description": str(exc.detail)}],
                               "xml" if xml else "json", "errors", exc.status_code)
            except Exception as exc:  # never a traceback: logged, said in the spec's shape
                # as every route answers it (text with NUL a 400, the database gone a 503
                # with Retry-After, else a logged 500), in the spec's error list
                plain = unexpected_response(request, exc)
                said = json.loads(bytes(plain.body))
                answer = _answer([{"code": plain.status_code, "description": said["description"]
                                   + "".join(f"; {p['field']}: {p['reason']}"
                                             for p in said.get("problems", []))}],
                                 "xml" if xml else "json", "errors", plain.status_code)
                if "Retry-After" in plain.headers:
                    answer.headers["Retry-After"] = plain.headers["Retry-After"]
                return answer

        return route


def _spec_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The answers the document declares: JSON or XML, and errors as the spec's list."""
    listed = {"type": "array", "items": {"type": "object", "required": ["code", "description"],
                                         "properties": {"code": {"type": "integer"},
                                                        "description": {"type": "string"}}}}
    answers: dict[int | str, dict[str, Any]] = {200: {
        "description": "Successful Response",
        "content": {"application/json": {}, "text/xml": {}}}}
    return answers | {
        status: {"description": WHY[status], "content": {"application/json": {"schema": listed},
                                                         "text/xml": {}}}
        for status in statuses}


# every bad input is a 400 (the spec knows no other), an unknown format or thing a 404
router = APIRouter(tags=["open311"], route_class=SpecErrors,
                   responses=_spec_answers(400, 404))
Format = Annotated[str, Path(description="json or xml", json_schema_extra={
    "enum": list(FORMATS)})]


def _xml(parent: Element, tag: str, value: Any) -> None:
    node = SubElement(parent, tag)
    if isinstance(value, dict):
        for key, inner in value.items():
            _xml(node, key, inner)
    elif isinstance(value, list):
        for inner in value:
            _xml(node, ITEM.get(tag, "item"), inner)
    elif isinstance(value, bool):
        node.text = "true" if value else "false"
    elif value is not None:
        node.text = str(value)


def _answer(data: Any, fmt: str, root: str, status: int = 200) -> Response:
    """``data`` as JSON, or as the spec's XML under ``root``."""
    if fmt == "json":
        return JSONResponse(data, status_code=status)
    holder = Element("holder")
    _xml(holder, root, data)
    body = '<?xml version="1.0" encoding="utf-8"?>\n' + tostring(holder[0], encoding="unicode")
    return Response(body.encode(), status_code=status, media_type=FORMATS["xml"])


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise NotFound(f"no format {fmt}", [Problem("format", fmt, "json or xml",
                                                    "格式须为 json 或 xml")])
    return fmt


def _zone(request: Request) -> str:
    zone: str = request.app.state.settings.time_zone
    return zone


@router.get(ROOT + "/discovery.{fmt}", summary="Open311 discovery: the endpoint, its "
            "specification and formats")
def discovery(request: Request, fmt: Format) -> Response:
    reject_unknown(request.query_params, IGNORED)
    return _answer({
        "changeset": CHANGESET,
        "contact": "The subdistrict's Twin administrators 街道数字孪生管理员",
        "key_service": "API keys for filing requests are issued by the administrators "
                       "(one per client system) 提交服务请求的API密钥由管理员发放",
        "endpoints": [{"specification": SPECIFICATION, "changeset": CHANGESET,
                       "url": f"{str(request.base_url).rstrip('/')}{ROOT}",
                       "type": "production", "formats": ["application/json", "text/xml"]}],
    }, _format(fmt), "discovery")


@router.get(ROOT + "/services.{fmt}", summary="Open311 services: the active case "
            "categories a request may be filed under")
def service_list(request: Request, fmt: Format, engine: EngineDep) -> Response:
    reject_unknown(request.query_params, IGNORED)
    fmt = _format(fmt)
    with engine.connect() as conn:
        return _answer(services(conn), fmt, "services")


@router.get(ROOT + "/services/{code}.{fmt}", summary="Open311 service definition (no "
            "service has attributes)")
def one_service(request: Request, code: str, fmt: Format, engine: EngineDep) -> Response:
    reject_unknown(request.query_params, IGNORED)
    fmt = _format(fmt)
    with engine.connect() as conn:
        return _answer(service_definition(conn, code), fmt, "service_definition")


@router.get(ROOT + "/requests.{fmt}", summary="Open311 service requests (hotline orders, "
            "newest first, at most 1000): service_request_id (overrides the rest), "
            "service_code, start_date, end_date (90 days at most, by default the last 90), "
            "status (open, closed), extensions=true for Twin's own state. Never a caller's "
            "name or phone")
def request_list(request: Request, fmt: Format, engine: EngineDep) -> Response:
    reject_unknown(request.query_params, REQUEST_PARAMS)
    fmt = _format(fmt)
    zone = _zone(request)
    query = request_query(request.query_params, datetime.now(UTC), zone)
    with engine.connect() as conn:
        return _answer(request_rows(conn, query, zone), fmt, "service_requests")


@router.get(ROOT + "/requests/{request_id}.{fmt}", summary="Open311 service request: one "
            "hotline order (extensions=true for Twin's own state)")
def one_request(request: Request, request_id: str, fmt: Format, engine: EngineDep) -> Response:
    reject_unknown(request.query_params, IGNORED | {"extensions"})
    fmt = _format(fmt)
    extensions = extensions_flag(request.query_params.get("extensions"))
    with engine.connect() as conn:
        row = request_row(conn, request_id, _zone(request), extensions)
    return _answer([row], fmt, "service_requests")


async def _form(request: Request) -> dict[str, str]:
    """The form-encoded body (the spec's), refused beyond MAX_FORM bytes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM:
        raise InvalidInput(f"the body must be {FORM}", [Problem(
            "Content-Type", kind or None, f"send the request form-encoded ({FORM})",
            "请求体须为表单编码")])
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise TooLarge(f"at most {MAX_FORM} bytes", [Problem(
                "body", len(body), f"at most {MAX_FORM} bytes", "请求体过大")])
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                              errors="strict", max_num_fields=100))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the body is not a UTF-8 form", [Problem(
            "body", None, "not a UTF-8 form-encoded body", "请求体编码无效")]) from None


@router.post(ROOT + "/requests.{fmt}", summary="Open311: file a service request "
             "(form-encoded: api_key, service_code, lat+long or address_string, description, "
             "first_name, last_name, phone, attribute[kind]) as a hotline order",
             responses=_spec_answers(403, 413))
async def create_request(request: Request, fmt: Format, engine: EngineDep) -> Response:
    reject_unknown(request.query_params, {"jurisdiction_id"})  # never a key in a URL
    fmt = _format(fmt)
    form = await _form(request)
    answer = await run_in_threadpool(file_request, engine, form)
    return _answer(answer, fmt, "service_requests")
