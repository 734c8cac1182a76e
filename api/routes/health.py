"""For process managers, load balancers and Prometheus: ``/health`` (the process answers),
``/ready`` (the database answers and its schema is the one this Twin needs) and ``/metrics``
(the request histograms of api.observe, the pool, sync outcomes, tablets with edits waiting,
the change log's length, the read replicas' lag). None needs a token, and none says anything
about a person."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import psycopg
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import BaseModel

from api.deps import get_pool
from api.errors import RETRY_AFTER_S
from twin.store.migrate import alembic_config

router = APIRouter(tags=["operations"])

_TIMEOUT_S = 2.0  # a database that takes longer than this to give a connection is not ready

# What the twin itself holds that an operator watches: tablets with edits not yet sent (from
# their last outbox report), and the change log's length (its rate is the twin's pace).
_FIGURES = """SELECT (SELECT count(*) FROM twin.device_outboxes WHERE waiting > 0),
                     (SELECT coalesce(sum(waiting), 0) FROM twin.device_outboxes),
                     (SELECT coalesce(max(id), 0) FROM twin.changes)"""
# The read replicas streaming from the database, as it sees them (`twin db replica add`).
_REPLICAS = "SELECT name, state, bytes_behind, lag_s FROM twin.replica_lag()"


@cache
def schema_head() -> str:
    """The schema revision this Twin's code needs."""
    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())


class NotReady(BaseModel):
    """Why this process cannot serve yet."""

    ready: bool
    reason: str


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"ready": False, "reason": reason}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


@router.get("/health", summary="The process is alive (no database asked)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Ready to serve: the database answers, its schema is current "
                              "(503 with Retry-After if not)", response_model=None,
            responses={503: {"model": NotReady, "description": "Not ready: the reason, and "
                             "when to ask again (Retry-After)"}})
async def ready(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        async with get_pool(request).connection(timeout=_TIMEOUT_S) as conn:
            row = await (await conn.execute("SELECT version_num FROM alembic_version")
                         ).fetchone()
            version = row[0] if row else None
            replicas = await (await conn.execute(_REPLICAS)).fetchall() \
                if version == schema_head() else []
    except psycopg.Error as exc:
        return _not_ready(f"the database does not answer: {str(exc).strip()[:200]}")
    if version != schema_head():
        return _not_ready(f"the database's schema is at {version}, this Twin needs "
                          f"{schema_head()}: run `twin db migrate`")
    # a replica behind or gone does not stop this process serving: it is said, not failed
    answer = {"ready": True, "schema": version, "replicas": [
        {"name": name, "state": state, "bytes_behind": behind, "lag_s": lag}
        for name, state, behind, lag in replicas]}
    if request.app.state.replicas is not None:  # TWIN_REPLICA_URLS as this process reads them
        answer["read_from"] = request.app.state.replicas.view()
    return answer


class _Twin(Collector):
    """The pool's and the database's figures, read at the scrape."""

    def __init__(self, pool: dict[str, int], figures: tuple[int, int, int] | None,
                 replicas: list[tuple[str, str, int | None, float]]) -> None:
        self.pool, self.figures, self.replicas = pool, figures, replicas

    def collect(self) -> Any:
        connections = GaugeMetricFamily("twin_db_pool_connections", "The async read pool's "
                                        "connections", labels=["state"])
        size, idle = self.pool.get("pool_size", 0), self.pool.get("pool_available", 0)
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        connections.add_metric(["max"], self.pool.get("pool_max", 0))
        yield connections
        yield GaugeMetricFamily("twin_db_pool_waiting", "Requests waiting for a connection",
                                value=self.pool.get("requests_waiting", 0))
        yield GaugeMetricFamily("twin_database_up", "Whether the database answered the "
                                "scrape", value=self.figures is not None)
        if self.figures is None:
            return
        tablets, edits, changes = self.figures
        yield GaugeMetricFamily("twin_tablets_waiting", "Tablets whose last report holds "
                                "edits not yet sent", value=tablets)
        yield GaugeMetricFamily("twin_tablet_edits_waiting", "Edits tablets hold, not yet "
                                "sent, by their last reports", value=edits)
        yield CounterMetricFamily("twin_changes", "Changes in the log (every one is kept)",
                                  value=changes)
        behind = GaugeMetricFamily("twin_replica_bytes_behind", "WAL bytes a streaming "
                                   "replica has not replayed yet", labels=["replica"])
        lag = GaugeMetricFamily("twin_replica_lag_seconds", "How long a streaming replica's "
                                "replay lags behind the database", labels=["replica"])
        for name, _state, bytes_behind, seconds in self.replicas:
            behind.add_metric([name], bytes_behind or 0)
            lag.add_metric([name], seconds)
        yield behind
        yield lag


@router.get("/metrics", summary="Prometheus metrics: request latency by route and status, "
                                "pool, sync outcomes, tablets waiting, the change log",
            response_class=Response)
async def metrics(request: Request) -> Response:
    pool = get_pool(request)
    replicas: list[Any] = []
    try:
        async with pool.connection(timeout=_TIMEOUT_S) as conn:
            figures = await (await conn.execute(_FIGURES)).fetchone()
            replicas = await (await conn.execute(_REPLICAS)).fetchall()
    except psycopg.Error:
        figures = None  # still answered: the process's own figures matter most then
    scraped = CollectorRegistry()
    scraped.register(_Twin(pool.get_stats(), figures, replicas))
    return Response(generate_latest(_requests()) + generate_latest(scraped),
                    media_type=CONTENT_TYPE_LATEST)


def _requests() -> CollectorRegistry:
    """The request and sync counts: this process's, or with `twin serve --workers N` every
    worker's (prometheus-client's multiprocess mode, its files where `twin serve` said)."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    every = CollectorRegistry()
    multiprocess.MultiProcessCollector(every)  # type: ignore[no-untyped-call]
    return every
