"""The read routes that carry the load, served before FastAPI's middleware and routing.

A page of 100 features costs PostgreSQL about 1 ms; FastAPI's stack (six middleware layers,
route matching, dependency solving) added a third of that again in Python. Items, one item
and tiles are matched here by one regular expression and handed to the same handlers the
FastAPI routes declare (so OpenAPI, ``OPTIONS`` and every other path are unchanged), with
the same error bodies and gzip when asked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from twin.errors import TwinError

log = logging.getLogger("twin.api")
# gzip's fastest level (nginx's default): a 670 KB page of changes takes 3 ms, not the 22 ms
# of Starlette's default 9, for a body 30-40% larger; the app's own middleware uses it too
GZIP_MIN_BYTES = 1000
GZIP_LEVEL = 1
Handler = Callable[..., Awaitable[Response]]


class ReadFastPath:
    """Dispatch ``GET``/``HEAD`` of the hot read routes straight to their handlers."""

    def __init__(self, app: ASGIApp, routes: dict[str, Handler]) -> None:
        """``routes`` maps path templates (``/a/{b}``) to handlers taking (request, b=...)."""
        self.app = app
        self.handlers = {handler.__name__: handler for handler in routes.values()}
        # one alternation, a named group per route: the match says whose it is
        self.pattern = re.compile("|".join(_group(handler.__name__, path)
                                           for path, handler in routes.items()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                 and self.pattern.fullmatch(scope["path"]))
        if not match:
            await self.app(scope, receive, send)
            return
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
        except Exception:  # the same answer FastAPI's stack would give, never a traceback
            response = errors.unexpected_response(request)
        if b"gzip" in dict(scope["headers"]).get(b"accept-encoding", b""):
            response = GZipMiddleware(response, minimum_size=GZIP_MIN_BYTES,
                                      compresslevel=GZIP_LEVEL)
        await response(scope, receive, send)


def _group(name: str, path: str) -> str:
    """``/a/{b}`` as ``(?P<name>/a/(?P<name__b>[^/]+))``."""
    inner = re.sub(r"{(\w+)}", rf"(?P<{name}__\1>[^/]+)", path)
    return f"(?P<{name}>{inner})"
