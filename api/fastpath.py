"""The read routes that carry the load, served before FastAPI's middleware and routing.

A page of 100 features costs PostgreSQL about 1 ms; FastAPI's stack (six middleware layers,
route matching, dependency solving) added a third of that again in Python. The routes marked
``@hot`` (items, one item, tiles, a feature's history) are matched here by one regular
expression and handed to the handlers their FastAPI routes declare: the route table is the
one source (so OpenAPI, ``OPTIONS`` and every other path are unchanged), with the same error
bodies, gzip when asked and CORS when configured. The contract (the same answer either way)
is tested by sending the same requests to an app without the fast path
(``tests/api/test_fastpath.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from twin.errors import TwinError

log = logging.getLogger("twin.api")
# gzip's fastest level (nginx's default): a 670 KB page of changes takes 3 ms, not the 22 ms
# of Starlette's default 9, for a body 30-40% larger; the app's own middleware uses it too
GZIP_MIN_BYTES = 1000
GZIP_LEVEL = 1
Handler = Callable[..., Awaitable[Response]]
# What the app's own middleware does, and how the fast path does the same: gzip (below),
# OPTIONS (never a GET or HEAD: a CORS preflight is an OPTIONS too) and CORS (the app's own
# CORSMiddleware, configured alike, around the hot routes). Any other middleware would be
# skipped for the hot routes.
MIRRORED_MIDDLEWARE = frozenset({"GZipMiddleware", "AllowMiddleware", "CORSMiddleware"})


def hot(handler: Handler) -> Handler:
    """Mark a GET route's handler to be served by the fast path (under its FastAPI route)."""
    setattr(handler, "twin_hot", True)  # noqa: B010  (a marker the route table is read for)
    return handler


def hot_routes(routes: Sequence[BaseRoute]) -> dict[str, Handler]:
    """The marked routes of an app: path template -> handler."""
    return {route.path: route.endpoint for route in routes
            if isinstance(route, APIRoute) and getattr(route.endpoint, "twin_hot", False)
            and "GET" in (route.methods or ())}


def check_middleware(middleware: Sequence[Middleware]) -> None:
    """Refuse to start with a middleware the fast path does not mirror: it would apply to
    every route but the hot ones, silently."""
    unknown = [getattr(m.cls, "__name__", str(m.cls)) for m in middleware
               if getattr(m.cls, "__name__", "") not in MIRRORED_MIDDLEWARE]
    if unknown:
        raise RuntimeError(f"middleware {', '.join(unknown)} would not apply to the hot read "
                           "routes (api.fastpath): mirror it there and add it to "
                           "MIRRORED_MIDDLEWARE, or serve those routes through the stack")


def cors_of(middleware: Sequence[Middleware]) -> Middleware | None:
    """The app's CORS middleware, if it has one (only when TWIN_CORS_ORIGINS names origins)."""
    return next((m for m in middleware
                 if getattr(m.cls, "__name__", "") == "CORSMiddleware"), None)


class ReadFastPath:
    """Dispatch ``GET``/``HEAD`` of the hot read routes straight to their handlers."""

    def __init__(self, app: ASGIApp, routes: dict[str, Handler],
                 cors: Middleware | None = None) -> None:
        """``routes`` maps path templates (``/a/{b}``) to handlers taking (request, b=...);
        ``cors`` is the app's CORS middleware, applied alike to the hot routes' answers."""
        self.app = app
        self.handlers = {handler.__name__: handler for handler in routes.values()}
        self.paths = {handler.__name__: path for path, handler in routes.items()}
        # one alternation, a named group per route: the match says whose it is
        self.pattern = re.compile("|".join(_group(handler.__name__, path)
                                           for path, handler in routes.items()))
        self.serve: ASGIApp = self._serve
        if cors is not None:
            self.serve = cors.cls(self._serve, *cors.args, **cors.kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                 and self.pattern.fullmatch(scope["path"]))
        if not match:
            await self.app(scope, receive, send)
            return
        scope["twin.fastpath"] = match
        scope["twin.route"] = self.paths[match.lastgroup or ""]  # for api.observe
        await self.serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The matched route's handler, its errors as the stack would answer them, gzipped
        as the stack would."""
        match: re.Match[str] = scope["twin.fastpath"]
        name = match.lastgroup or ""
        request = Request(scope, receive)
        prefix = name + "__"
        arguments = {key[len(prefix):]: value for key, value in match.groupdict().items()
                     if value is not None and key.startswith(prefix)}
        response: Any
        try:
            response = await self.handlers[name](request, **arguments)
        except TwinError as exc:
            response = errors.twin_error_response(exc, request)
        except Exception as exc:  # the same answer FastAPI's stack would give, never a
            # traceback (with CORS headers, which the stack's outermost error handler leaves out)
            response = errors.unexpected_response(request, exc)
        if b"gzip" in dict(scope["headers"]).get(b"accept-encoding", b""):
            await GZipMiddleware(response, minimum_size=GZIP_MIN_BYTES,
                                 compresslevel=GZIP_LEVEL)(scope, receive, send)
        else:
            await response(scope, receive, _vary_as_gzip_would(send))


def _vary_as_gzip_would(send: Send) -> Send:
    """What gzip's middleware does to an answer the client did not ask to compress: it says
    ``Vary: Accept-Encoding`` when the body is large enough to have been compressed. The
    middleware costs about 15 µs a request to decide that (measured: 2 µs to send a 50 KB
    page, 17 µs through it; this, 1 µs), a twelfth of a small answer's Python; the hot
    routes' answers are never of a type it leaves alone, content-encoded or partial."""
    held: list[Message] = []

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            held.append(message)
            return
        if held:
            start = held.pop()
            if len(message.get("body", b"")) >= GZIP_MIN_BYTES or message.get("more_body"):
                start["headers"] = [*start.get("headers", []), (b"vary", b"Accept-Encoding")]
            await send(start)
        await send(message)

    return sending


def _group(name: str, path: str) -> str:
    """``/a/{b}`` as ``(?P<name>/a/(?P<name__b>[^/]+))``."""
    inner = re.sub(r"{(\w+)}", rf"(?P<{name}__\1>[^/]+)", path)
    return f"(?P<{name}>{inner})"
