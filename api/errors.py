"""One table from domain errors to HTTP status codes, one place registering the handlers."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
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
    TooLarge,
    TwinError,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)

log = logging.getLogger("twin.api")
RETRY_AFTER_S = 5  # how long a client waits before sending again what a 503 refused

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
    with Retry-After instead: the request may be sent again, and nothing was written."""
    if _database_gone(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc))
        return JSONResponse(_body("DatabaseUnavailable", "the database is not answering; "
                                  f"try again in {RETRY_AFTER_S} s"), status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(_body("ServerError", "the server failed; the error is logged"),
                        status_code=500)


def _database_gone(exc: BaseException) -> bool:
    """A lost or refused connection (psycopg's OperationalError, under SQLAlchemy's wrapper
    or the pool's timeout), as opposed to a statement the database refused."""
    inner = exc.orig if isinstance(exc, DBAPIError) else exc
    return isinstance(inner, psycopg.OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return unexpected_response(request, exc)


def register(app: FastAPI) -> None:
    app.add_exception_handler(TwinError, _twin_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
