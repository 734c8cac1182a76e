"""What the IT staff watch, with the tools they already have: every request timed into a
Prometheus histogram by route template, method and status, and logged as one JSON line with
a request id (the client's ``X-Request-Id`` if it sent a sane one, else a new one; answered
in the same header, and kept in ``request.state.request_id`` for the handlers).

It wraps the whole app, the hot read routes' fast path included (api.fastpath names the
route it matched in the scope; FastAPI's router names its own), so no answer goes unseen.
prometheus-client does the counting; ``GET /metrics`` (api.routes.health) reads it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access = logging.getLogger("twin.access")

# Buckets from a hot page (about a millisecond) to an analysis (seconds).
REQUESTS = Histogram("twin_http_request_duration_seconds",
                     "Time to answer a request, by route template, method and status",
                     ["route", "method", "status"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                              5, 10, 30))
SYNC_EDITS = Counter("twin_sync_edits_total", "Edits tablets sent through POST /sync, by the "
                     "outcome each got", ["status"])

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def log_requests() -> None:
    """Each request as one JSON line on standard output (what `twin serve` runs with; a
    journal or a log shipper reads it as it is)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def route_of(scope: Scope) -> str:
    """The route template a request matched (a bounded label), or ``unmatched``."""
    named = scope.get("twin.route")
    if named:
        return str(named)
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class Observed:
    """Time, count and log each HTTP request; give it an id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid  # request.state.request_id
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before it starts answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(scope)
            REQUESTS.labels(route, scope["method"], str(status)).observe(elapsed)
            if access.isEnabledFor(logging.INFO):
                access.info(json.dumps({
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "request_id": rid,
                    "method": scope["method"], "path": scope["path"], "route": route,
                    "status": status, "ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0]}, ensure_ascii=False))
