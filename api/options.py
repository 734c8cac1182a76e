"""``OPTIONS`` on any path answers which methods it allows (QGIS and editors ask first), and
for PATCH and POST which bodies they take (``Accept-Patch``, RFC 5789 §3.1; ``Accept-Post``,
W3C LDP), as OGC API - Features Part 4 asks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_ACCEPT_HEADERS = {"PATCH": b"accept-patch", "POST": b"accept-post"}
Handler = Callable[..., Awaitable[Any]]


def accepts(media_types: str) -> Callable[[Handler], Handler]:
    """Mark a PATCH or POST route's handler with the media types its body may have."""
    def mark(handler: Handler) -> Handler:
        setattr(handler, "twin_accepts", media_types)  # noqa: B010  (read from the route table)
        return handler
    return mark


class AllowMiddleware:
    """Answer OPTIONS with 204 and ``Allow``, from the app's own route table."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        """``routes``: the app's routes as its routers declare them, whose handlers
        ``accepts`` may have marked (the app's own table holds the routers, not them)."""
        self.app = app
        self.accepting = [(route, str(media)) for route in routes
                          if (media := getattr(getattr(route, "endpoint", None),
                                               "twin_accepts", None))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        routes = scope["app"].router.routes
        methods = {method for method in _METHODS if any(
            route.matches({**scope, "method": method})[0] == Match.FULL for route in routes)}
        if not methods:
            await self.app(scope, receive, send)  # an unknown path: the usual 404
            return
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        headers = [(b"allow", allow.encode()), (b"content-length", b"0")]
        for method, header in _ACCEPT_HEADERS.items():
            media = next((media for route, media in self.accepting
                          if route.matches({**scope, "method": method})[0] == Match.FULL), None)
            if method in methods and media:
                headers.append((header, media.encode()))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
