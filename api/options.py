"""``OPTIONS`` on any path answers which methods it allows (QGIS and editors ask first)."""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class AllowMiddleware:
    """Answer OPTIONS with 204 and ``Allow``, from the app's own route table."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"allow", allow.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
