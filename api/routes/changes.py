"""The update log over HTTP: the feed (JSON pages or CSV), a feature's history, the difference
between two moments, and the live stream (Server-Sent Events).

Workers read only what happened in their own micro-grids; everyone else reads it all. Nothing
here writes: the log is changed by edits alone, and only ever appended to.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.deps import UserDep, bearer_digest, get_pool, token_scope
from api.errors import SIGNED, errors, media
from api.fastpath import hot
from api.live import ChangeSignal
from api.params import bad, digits, id_number, parse_bbox, parse_limit, reject_unknown
from api.replicas import read_pool, replica_read
from twin.crs import CRS84
from twin.errors import Forbidden, NotFound
from twin.history.changes import (
    CHANGE_JSON,
    CSV_COLUMNS,
    CURSOR_SQL,
    HELD_SQL,
    NEWEST_CURSOR_SQL,
    ChangeQuery,
    changes_sql,
    diff_sql,
    heat_sql,
    history_sql,
)
from twin.registry import all_layers, get_layer
from twin.times import parse_time
from twin.users import ROLES, User

router = APIRouter(tags=["history"], responses=errors(*SIGNED))
FEED_PARAMS = frozenset({"order", "limit", "cursor", "layer", "micro_grid",
                         "residential_area", "actor", "role", "operation", "feature_id",
                         "from", "to", "bbox", "f"})
OPERATIONS = ("insert", "update", "delete")
HEAT_PARAMS = (FEED_PARAMS - {"order", "limit", "cursor", "f"}) | {"cell_m"}
HEAT_CELL_M = 50.0
HEAT_DEFAULT_PERIOD = timedelta(days=7)
METRES_PER_DEGREE = 111_320.0  # along a meridian; a cell is a little narrower east-west
STREAM_BATCH = 500
HEARTBEAT_SECONDS = 15.0
HELD_SECONDS = 0.5  # how soon to look again while a change waits behind the horizon


def _choice(params: Any, name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise bad(name, value, f"one of {', '.join(allowed)}", "取值无效")
    return str(value) if value is not None else None


async def _cursor(conn: AsyncConnection[Any], raw: str | None, name: str
                  ) -> tuple[int, int] | None:
    """The (tx, id) of the change a cursor names; a change id that does not exist is a 400."""
    if raw is None:
        return None
    row = None
    if (number := id_number(raw)) is not None:
        row = await (await conn.execute(CURSOR_SQL, {"id": number})).fetchone()
    if row is None:
        raise bad(name, raw, "not the id of a change in the log", "不是变更记录的编号")
    return int(row[0]), int(row[1])


def _layer(params: Any) -> str | None:
    """The ``layer`` a query names: a 400 naming it when there is no such layer (a filter's
    value, not a path's thing)."""
    layer: str | None = params.get("layer")
    if layer is not None and layer not in all_layers():
        raise bad("layer", layer, f"one of {', '.join(all_layers())}", "未知图层")
    return layer


def _feed_query(request: Request, user: User, allowed: frozenset[str] = FEED_PARAMS
                ) -> ChangeQuery:
    """Every feed parameter, checked (the cursor is resolved against the log later)."""
    params = request.query_params
    reject_unknown(params, allowed)
    layer = _layer(params)
    feature = params.get("feature_id")
    if feature is not None and id_number(feature) is None:
        raise bad("feature_id", feature, "a feature id (a whole number)", "要素编号无效")
    since, until = parse_time("from", params.get("from")), parse_time("to", params.get("to"))
    if since and until and since >= until:
        raise bad("to", params["to"], "must be after from", "结束时间须晚于开始时间")
    csv = _choice(params, "f", ("json", "csv")) == "csv"
    return ChangeQuery(
        order="oldest" if _choice(params, "order", ("newest", "oldest")) == "oldest"
        else "newest",
        limit=None if csv and "limit" not in params else parse_limit(params.get("limit")),
        layer=layer, micro_grid=params.get("micro_grid"),
        residential_area=params.get("residential_area"), actor=params.get("actor"),
        role=_choice(params, "role", (*ROLES, "database")),
        operation=_choice(params, "operation", OPERATIONS),
        feature_id=int(feature) if feature else None, since=since, until=until,
        bbox=parse_bbox(params.get("bbox"), CRS84), grids=user.read_grids)


@router.get("/changes", summary="The change log, a page at a time (JSON) or streamed (CSV)",
            response_class=Response, responses=media("application/json", "text/csv"))
async def feed(request: Request, user: UserDep) -> Response:
    query = _feed_query(request, user)
    pool = get_pool(request)
    async with pool.connection() as conn:
        query = replace(query, after=await _cursor(conn, request.query_params.get("cursor"),
                                                   "cursor"))
        if request.query_params.get("f") == "csv":
            return _csv(pool, query)
        sql, params = changes_sql(query, f"{CHANGE_JSON}::text")
        rows = await (await conn.execute(sql, params)).fetchall()
    assert query.limit is not None
    page = rows[:query.limit]
    links = [{"rel": "self", "type": "application/json", "href": str(request.url)}]
    if len(rows) > query.limit:
        following = dict(request.query_params) | {"cursor": str(page[-1][2])}
        links.append({"rel": "next", "type": "application/json",
                      "href": str(request.url.replace_query_params(**following))})
    tail = json.dumps({"numberReturned": len(page), "links": links}, ensure_ascii=False)
    return Response(f'{{"changes":[{",".join(row[0] for row in page)}],{tail[1:]}',
                    media_type="application/json")


def _csv(pool: AsyncConnectionPool[AsyncConnection[Any]], query: ChangeQuery) -> Response:
    """The matching changes as CSV, written by PostgreSQL's COPY and streamed as it comes."""
    sql, params = changes_sql(query, CSV_COLUMNS, with_cursor=False)

    async def body() -> AsyncIterator[bytes]:
        async with pool.connection() as conn:
            copy = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)"
            async with conn.cursor().copy(copy, params) as rows:
                async for chunk in rows:
                    yield bytes(chunk)

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="changes.csv"'})


@router.get("/changes/stream", summary="Every new change as it commits (Server-Sent Events)",
            response_class=StreamingResponse, responses=media("text/event-stream"))
async def stream(request: Request, user: UserDep) -> StreamingResponse:
    """Resumes after ``Last-Event-ID`` (or ``cursor``) without losing a change; else starts
    at the newest change. Same filters as the feed; always oldest first."""
    query = replace(_feed_query(request, user), order="oldest", limit=STREAM_BATCH)
    if request.query_params.get("f") == "csv":
        raise bad("f", "csv", "the stream is JSON events; use /changes?f=csv", "实时流仅支持JSON")
    pool = get_pool(request)
    signal: ChangeSignal = request.app.state.signal
    resume = request.headers.get("last-event-id") or request.query_params.get("cursor")
    async with pool.connection() as conn:
        after = await _cursor(conn, resume, "Last-Event-ID")
        if after is None:  # from now on: after the newest change every reader can see
            row = await (await conn.execute(NEWEST_CURSOR_SQL)).fetchone()
            after = (int(row[0]), int(row[1])) if row else None

    async def events() -> AsyncIterator[str]:
        nonlocal after
        yield "retry: 2000\n\n"
        while True:
            woken = signal.current()
            sql, params = changes_sql(replace(query, after=after), f"{CHANGE_JSON}::text")
            async with pool.connection() as conn:
                rows = await (await conn.execute(sql, params)).fetchall()
            for text, tx, change_id in rows:
                yield f"id: {change_id}\nevent: change\ndata: {text}\n\n"
                after = (tx, change_id)
            if len(rows) > STREAM_BATCH:
                continue
            wait = HEARTBEAT_SECONDS
            if not rows:
                yield ": waiting\n\n"  # keeps proxies from closing an idle stream
                async with pool.connection() as conn:
                    if (await (await conn.execute(HELD_SQL)).fetchone() or (False,))[0]:
                        wait = HELD_SECONDS
            await signal.wait(woken, wait)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/collections/{layer}/items/{fid}/history",
            summary="Every version of a feature: who, when, why, and what changed",
            response_class=Response,
            responses=media("application/json") | errors(403, 404))
@hot
async def history(request: Request, layer: str, fid: str) -> Response:
    """Newest version first, ``limit`` at a time (default 100); the ``next`` link carries the
    version to continue below, so a feature edited thousands of times still answers fast.
    Served by api.fastpath: the token and the page on one connection."""
    digest = bearer_digest(request)
    params = request.query_params
    reject_unknown(params, {"f", "limit", "cursor"})
    found = get_layer(layer)
    number = id_number(fid) or -1  # no feature has it: an empty history is a 404
    before = params.get("cursor")
    if before is not None and not (digits(before) and len(before) <= 9):
        raise bad("cursor", before, "use the next link the previous page gave", "翻页游标无效")
    limit = parse_limit(params.get("limit"))
    async with get_pool(request).connection() as conn:
        grids = await token_scope(request, conn, digest)
        row = await (await conn.execute(history_sql(), {
            "layer": found.name, "id": number, "limit": limit,
            "before": int(before) if before else None,
            "grids": list(grids) if grids is not None else None})).fetchone()
    if row is None or not row[1]:
        raise NotFound(f"feature {fid!r} of {layer} has no history: it never existed")
    if row[0] is None:
        raise Forbidden(f"feature {fid} of {layer} was never in your micro-grids "
                        f"({', '.join(grids or ()) or 'none'})")
    links = [{"rel": "self", "type": "application/json", "href": str(request.url)}]
    if row[3]:
        links.append({"rel": "next", "type": "application/json", "href": str(
            request.url.replace_query_params(**(dict(params) | {"cursor": str(row[2])})))})
    return Response(f'{row[0][:-1]},"links":{json.dumps(links)}}}',
                    media_type="application/json")


@router.get("/changes/heat", summary="Where the twin changed: changes counted per cell of a "
            "grid, for a heat map (default: the last 7 days)", response_class=Response,
            responses=media("application/json"))
@replica_read
async def heat(request: Request, user: UserDep) -> Response:
    """The feed's filters (``from``/``to``, ``layer``, ``micro_grid``, ``bbox``, ...) and
    ``cell_m``, the cell's size in metres (default 50); a worker's own micro-grids only."""
    query = _feed_query(request, user, HEAT_PARAMS)
    if query.since is None and query.until is None:
        query = replace(query, since=datetime.now(UTC) - HEAT_DEFAULT_PERIOD)
    raw = request.query_params.get("cell_m", str(HEAT_CELL_M))
    try:
        cell = float(raw)
    except ValueError:
        cell = math.nan
    if not 1 <= cell <= 10_000:
        raise bad("cell_m", raw, "metres, from 1 to 10,000", "单元格须为1至10000米")
    sql, params = heat_sql(replace(query, limit=None), cell / METRES_PER_DEGREE)
    async with read_pool(request).connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None  # an aggregate answers one row
    since = query.since.isoformat() if query.since else None
    until = query.until.isoformat() if query.until else None
    return Response(f'{row[0][:-1]},"from":{json.dumps(since)},"to":{json.dumps(until)},'
                    f'"cell_m":{cell}}}', media_type="application/json")


@router.get("/changes/diff", summary="What changed between two moments in a box or micro-grid",
            response_class=Response, responses=media("application/geo+json") | errors(403))
async def diff(request: Request, user: UserDep) -> Response:
    """Features added, removed and changed (with each differing field) between ``from`` and
    ``to``, as GeoJSON the map can draw."""
    params = request.query_params
    reject_unknown(params, {"from", "to", "bbox", "micro_grid", "layer", "f"})
    t1, t2 = parse_time("from", params.get("from")), parse_time("to", params.get("to"))
    if t1 is None or t2 is None:
        raise bad("from" if t1 is None else "to", None, "both from and to are required",
                  "须给出起止时间")
    if t1 >= t2:
        raise bad("to", params["to"], "must be after from", "结束时间须晚于开始时间")
    grid, bbox = params.get("micro_grid"), parse_bbox(params.get("bbox"), CRS84)
    if (grid is None) == (bbox is None):
        raise bad("bbox", params.get("bbox"), "give either bbox or micro_grid", "须给出范围或网格")
    scope = user.read_grids
    if scope is not None and grid not in scope:
        raise Forbidden(f"workers compare their own micro-grids ({', '.join(scope) or 'none'}):"
                        " give micro_grid")
    layer = _layer(params)
    values: dict[str, Any] = {"t1": t1, "t2": t2, "grid": grid, "layer": layer}
    if bbox is not None:
        values.update(zip(("x0", "y0", "x1", "y1"), bbox, strict=True))
    async with get_pool(request).connection() as conn:
        row = await (await conn.execute(diff_sql(grid is not None), values)).fetchone()
    assert row is not None
    return Response(row[0], media_type="application/geo+json")

