"""One table from domain errors to HTTP status codes, one place registering the handlers."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from api.html import sign_in_page, wants_html
from twin.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    IllegalMove,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Problem,
    TooLarge,
    TwinError,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)

log = logging.getLogger("twin.api")
RETRY_AFTER_S = 5  # how long a client waits before sending again what a 503 refused
DISK_FULL = "53100"  # SQLSTATE disk_full: a table could not grow on its disk
UNTRANSLATABLE = "22P05"  # SQLSTATE untranslatable_character: a jsonb's \u0000

STATUS: dict[type[TwinError], tuple[int, str]] = {
    InvalidInput: (400, "InvalidParameterValue"),
    Unauthorized: (401, "Unauthorized"),
    Forbidden: (403, "Forbidden"),
    NotFound: (404, "NotFound"),
    Conflict: (409, "Conflict"),
    PreconditionFailed: (412, "PreconditionFailed"),
    TooLarge: (413, "PayloadTooLarge"),
    UnsupportedMediaType: (415, "UnsupportedMediaType"),
    Unprocessable: (422, "InvalidValue"),
    PreconditionRequired: (428, "PreconditionRequired"),
    DatabaseUnavailable: (503, "DatabaseUnavailable"),
}


class ProblemBody(BaseModel):
    """One thing wrong with the request (twin.errors.Problem)."""

    field: str
    value: Any = None
    reason: str
    reason_zh: str = ""


class ErrorBody(BaseModel):
    """Every error's body, so that a client reads any refusal the same way."""

    model_config = ConfigDict(extra="allow")  # a 412's current version, a 409's allowed moves
    code: str
    description: str
    problems: list[ProblemBody] = []


# What each status says, as the OpenAPI document tells clients (``errors``).
WHY = {
    400: "A parameter or the body is malformed, missing or unknown: the problems name each",
    401: "No live bearer token (POST /auth/token gives one); a browser gets the sign-in "
         "page",
    403: "The token's role or scope does not allow this",
    404: "No such thing (the path names a layer, feature, case, order or file that is not "
         "there)",
    409: "The twin's state does not allow this now (the problems or `allowed` say why)",
    412: "Based on a version that is no longer current: the body gives the current one",
    413: "The body is larger than accepted",
    415: "The body's Content-Type is not one accepted here",
    422: "Well formed, but it breaks the twin's rules: the problems name each field, value "
         "and reason",
    428: "The version being changed must be named (If-Match)",
    503: "The database is not answering: nothing was written, send it again after "
         "Retry-After",
}


# What every operation that needs a token may answer besides its own.
SIGNED = (400, 401, 503)
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "The client's copy is current (If-None-Match): no body"}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation gives, for its declaration (``responses=``): JSON
    whatever the operation's own media type (api.openapi adds ErrorBody to the components),
    and for a 401 the sign-in page a browser gets instead."""
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {status: {"description": WHY[status], "content": body | (
        {"text/html": {}} if status == 401 else {})} for status in statuses}


def media(*types: str, status: int = 200, description: str = "Successful Response"
          ) -> dict[int | str, dict[str, Any]]:
    """An answer in other media types than JSON (GeoJSON, HTML, CSV, images, tiles)."""
    return {status: {"description": description, "content": {t: {} for t in types}}}


def _body(code: str, description: str, problems: list[dict[str, Any]] | None = None
          ) -> dict[str, Any]:
    """The OGC exception shape (code, description) with each problem spelled out."""
    body: dict[str, Any] = {"code": code, "description": description}
    if problems:
        body["problems"] = problems
    return body


def twin_error_response(exc: TwinError, request: Request) -> Response:
    """A domain error as its status and OGC exception body; a browser that needs to sign in
    gets the sign-in page (still a 401), which asks for the page again with a token."""
    status, code = next((v for k, v in STATUS.items() if isinstance(exc, k)),
                        (400, "InvalidParameterValue"))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else \
        {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    if status == 401 and wants_html(request):
        return HTMLResponse(sign_in_page(), status_code=401, headers=headers)
    body = _body(code, exc.message, [p.as_dict() for p in exc.problems])
    if isinstance(exc, PreconditionFailed):
        body.update(exc.current)  # what to base the next attempt on
    if isinstance(exc, IllegalMove):
        body["allowed"] = exc.allowed
    return JSONResponse(body, status_code=status, headers=headers)


async def _twin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TwinError)
    return twin_error_response(exc, request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [{"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]),
                 "value": e.get("input"), "reason": e["msg"]} for e in exc.errors()]
    description = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
    return JSONResponse(_body("InvalidParameterValue", description, problems), status_code=400)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return JSONResponse(_body(code, str(exc.detail)), status_code=exc.status_code,
                        headers=exc.headers)


def unexpected_response(request: Request, exc: BaseException) -> JSONResponse:
    """A 500 that says nothing of the internals; the exception being handled is logged. The
    database gone (restarting, a connection it closed, no connection free in time) is a 503
    with Retry-After instead: the request may be sent again, and nothing was written. So is
    its disk full, logged as an error: someone must free space."""
    if nul_in_text(exc):
        refusal = nul_refusal(request)
        return JSONResponse(_body("InvalidParameterValue", refusal.message,
                                  [p.as_dict() for p in refusal.problems]), status_code=400)
    gone = _database_gone(exc)
    if gone is not None:
        first = str(gone).strip().splitlines()[0] if str(gone).strip() else repr(gone)
        if getattr(gone, "sqlstate", None) == DISK_FULL:
            log.error("the database's disk is full, on %s %s: %s", request.method,
                      request.url.path, first)
            code, why = "DiskFull", "the database's disk is full: nothing was written"
        else:
            log.warning("database unavailable on %s %s: %s", request.method,
                        request.url.path, first)
            code, why = "DatabaseUnavailable", "the database is not answering"
        return JSONResponse(_body(code, f"{why}; try again in {RETRY_AFTER_S} s"),
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(_body("ServerError", "the server failed; the error is logged"),
                        status_code=500)


def nul_in_text(exc: BaseException | None) -> bool:
    """Text holding NUL reached the database, which cannot store it in text (psycopg refuses
    it before sending) nor in jsonb (the server refuses ``\\u0000``): whatever parameter or
    body carried it, the request's own fault, and nothing was written."""
    while exc is not None:
        inner = exc.orig if isinstance(exc, DBAPIError) else exc
        if isinstance(inner, psycopg.DataError) and (
                inner.sqlstate == UNTRANSLATABLE or "NUL (0x00)" in str(inner)):
            return True
        exc = exc.__cause__
    return False


def nul_refusal(request: Request) -> InvalidInput:
    """The 400 of text with NUL, naming where it came: the query parameters or the path
    holding one, else the body."""
    found: list[tuple[str, str | None]] = [
        (name, value) for name, value in request.query_params.multi_items()
        if "\x00" in name + value]
    if "\x00" in request.url.path:
        found.append(("path", request.url.path))
    return InvalidInput("text may not contain NUL characters", [
        Problem(name, value, "NUL characters are not allowed", "文本不得包含 NUL 字符")
        for name, value in found or [("body", None)]])


def _database_gone(exc: BaseException | None) -> BaseException | None:
    """The lost or refused connection (psycopg's OperationalError, under SQLAlchemy's wrapper,
    the pool's timeout, or the cause of an error raised over one: a stream's), or the full
    disk, that ``exc`` is; None for a statement the database refused, or anything else."""
    while exc is not None:
        inner = exc.orig if isinstance(exc, DBAPIError) else exc
        if isinstance(inner, psycopg.OperationalError):
            return inner
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return exc
        exc = exc.__cause__
    return None


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return unexpected_response(request, exc)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The database gone, answered where it was raised: the 503 is the whole story, so it
    is not raised on to the server's log (a traceback, with the statement's parameters, for
    each request while PostgreSQL restarts). So is text with NUL refused (a 400 naming
    where it came). Any other database error goes on as before."""
    if _database_gone(exc) is None and not nul_in_text(exc):
        raise exc
    return unexpected_response(request, exc)


def register(app: FastAPI) -> None:
    app.add_exception_handler(TwinError, _twin_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(psycopg.Error, _database_error)
    app.add_exception_handler(Exception, _unexpected)
