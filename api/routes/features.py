"""OGC API - Features: the layers as collections, their items streamed as PostgreSQL built them.

Reads go through psycopg's async pool, not the ORM: PostgreSQL writes each feature's GeoJSON
and Python only joins the texts, so a page costs little more than the query itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from html import escape
from typing import Any

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection

from api.deps import bearer_digest, get_pool, token_role
from api.fastpath import hot
from api.html import page, wants_html
from api.params import (
    check_format,
    encode_cursor,
    id_number,
    items_query,
    parse_crs,
    reject_unknown,
    tile_numbers,
)
from twin.crs import CRS84, SUPPORTED
from twin.errors import InvalidInput, NotFound, Problem
from twin.features.cql import queryables
from twin.features.reads import (
    EXTENT_SQL,
    ItemsQuery,
    extent_bbox,
    one_feature_sql,
    page_sql,
    tile_sql,
)
from twin.layer import Layer
from twin.registry import all_layers, get_layer
from twin.times import parse_time

router = APIRouter(tags=["features"])
GEOJSON = "application/geo+json"
_CHUNK = 500  # features per row from PostgreSQL (and per network write when streaming)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _collection(layer: Layer, base: str, bbox: list[float] | None) -> dict[str, Any]:
    href = f"{base}/collections/{layer.name}"
    doc: dict[str, Any] = {
        "id": layer.name,
        "title": layer.title,
        "description": layer.description,
        "itemType": "feature",
        "crs": list(SUPPORTED),
        "storageCrs": CRS84.uri,
        "links": [
            {"rel": "self", "type": "application/json", "title": layer.title, "href": href},
            {"rel": "items", "type": GEOJSON, "title": f"{layer.title} items",
             "href": f"{href}/items"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "queryables",
             "href": f"{href}/queryables"},
        ],
    }
    if bbox:
        doc["extent"] = {"spatial": {"bbox": [bbox], "crs": CRS84.uri}}
    return doc


async def _extent(conn: AsyncConnection[Any], layer: Layer) -> list[float] | None:
    cur = await conn.execute(EXTENT_SQL, {"table": f"features_{layer.name}",
                                          "layer": layer.name})
    row = await cur.fetchone()
    return extent_bbox(row[0] if row else None)


def _collections_html(docs: list[dict[str, Any]]) -> Response:
    rows = "".join(
        f"<tr><td><a href='{escape(d['links'][0]['href'])}?f=html'>{escape(d['title'])}</a></td>"
        f"<td>{escape(d['description'])}</td><td><a href='{escape(d['links'][1]['href'])}'>"
        f"items 要素</a></td></tr>" for d in docs)
    return page("图层 Layers", f"<table><tr><th>图层 layer</th><th>说明 description</th>"
                f"<th></th></tr>{rows}</table>")


async def _documents(request: Request, layers: list[Layer]) -> list[dict[str, Any]]:
    """Collection documents of ``layers``, after checking the parameters and the token."""
    reject_unknown(request.query_params, {"f"})
    check_format(request.query_params)
    token = bearer_digest(request)
    async with get_pool(request).connection() as conn:
        await token_role(request, conn, token)
        return [_collection(layer, _base(request), await _extent(conn, layer))
                for layer in layers]


@router.get("/collections", summary="The layers of the twin", response_model=None)
async def collections(request: Request) -> dict[str, Any] | Response:
    docs = await _documents(request, list(all_layers().values()))
    if wants_html(request):
        return _collections_html(docs)
    return {"collections": docs, "links": [
        {"rel": "self", "type": "application/json", "href": f"{_base(request)}/collections"}]}


@router.get("/collections/{layer}", summary="One layer", response_model=None)
async def collection(request: Request, layer: str) -> dict[str, Any] | Response:
    (doc,) = await _documents(request, [get_layer(layer)])
    return _collections_html([doc]) if wants_html(request) else doc


def _not_modified(request: Request, etag: str) -> bool:
    asked = request.headers.get("if-none-match", "")
    return etag in [tag.strip() for tag in asked.split(",")] or asked.strip() == "*"


@router.get("/collections/{layer}/queryables", summary="What a filter may name",
            response_class=Response)
async def layer_queryables(request: Request, layer: str) -> Response:
    reject_unknown(request.query_params, {"f"})
    found = get_layer(layer)
    token = bearer_digest(request)
    async with get_pool(request).connection() as conn:
        await token_role(request, conn, token)
    return Response(json.dumps(queryables(found, _base(request)), ensure_ascii=False),
                    media_type="application/schema+json")


@router.get("/collections/{layer}/items", summary="Features of a layer, a page at a time",
            response_class=StreamingResponse)
@hot
async def items(request: Request, layer: str) -> Response:
    """A page of up to one chunk is one row, fetched whole (its statement prepared after a
    few uses); a larger one streams a chunk at a time, so memory stays flat whatever the
    limit."""
    token = bearer_digest(request)
    query = items_query(request.query_params, get_layer(layer))
    sql, params = page_sql(query, _CHUNK)
    if query.limit <= _CHUNK:
        async with get_pool(request).connection() as conn:
            await token_role(request, conn, token)
            with _evaluation_errors():
                row = await (await conn.execute(sql, params, binary=True)).fetchone()
        assert row is not None  # an aggregate without GROUP BY: always one row
        text, found, digest, *last = row
        etag = _items_etag(request, query, found, digest)
        if _not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag})
        more = last if found > query.limit else None
        return Response(_HEAD + (text or b"")
                        + _tail(request, min(found, query.limit), more), media_type=GEOJSON,
                        headers={"ETag": etag, "Content-Crs": f"<{query.crs.uri}>"})
    return await _stream(request, query, sql, params, token)


async def _stream(request: Request, query: ItemsQuery, sql: str, params: dict[str, Any],
                  token: str) -> Response:
    """A large page: the first chunk read before answering (it carries the ETag), the others
    sent as PostgreSQL sends them; the connection goes back to the pool at the end."""
    pool = get_pool(request)
    conn = await pool.getconn()
    try:
        await token_role(request, conn, token)
        rows = conn.cursor().stream(sql, params, binary=True, size=1)
        with _evaluation_errors():
            first = await anext(rows, None)
    except BaseException:
        await pool.putconn(conn)
        raise
    found, digest = (first[1], first[2]) if first else (0, None)
    etag = _items_etag(request, query, found, digest)
    if first is None or _not_modified(request, etag):
        await pool.putconn(conn)  # an unfinished stream (a 304): the pool resets it
        if _not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(_HEAD + _tail(request, 0, None), media_type=GEOJSON,
                        headers={"ETag": etag, "Content-Crs": f"<{query.crs.uri}>"})

    async def body() -> AsyncIterator[bytes]:
        """The first chunk, the others as PostgreSQL sends them, then count and links."""
        try:
            yield _HEAD + first[0]
            last = first
            async for chunk in rows:
                yield b"," + chunk[0]
                last = chunk
            yield _tail(request, min(found, query.limit),
                        last[3:] if found > query.limit else None)
        finally:
            await pool.putconn(conn)

    return StreamingResponse(body(), media_type=GEOJSON,
                             headers={"ETag": etag, "Content-Crs": f"<{query.crs.uri}>"})


@contextmanager
def _evaluation_errors() -> Iterator[None]:
    """A filter PostgreSQL cannot evaluate (a bad cast, say) is the client's error: 400."""
    try:
        yield
    except psycopg.DataError as exc:
        raise InvalidInput(f"the query could not be evaluated: {exc}",
                           [Problem("filter", None, str(exc))]) from None


def _items_etag(request: Request, query: ItemsQuery, found: int, rows: int | None) -> str:
    """A page's strong ETag: how many rows and the digest of their (id, version), and the
    exact query."""
    asked = hashlib.sha1(str(request.query_params).encode(),
                         usedforsecurity=False).hexdigest()[:16]
    return f'"{query.layer.name}-{found}-{(rows or 0) & 0xFFFFFFFFFFFFFFFF:x}-{asked}"'


_HEAD = b'{"type":"FeatureCollection","features":['


def _tail(request: Request, count: int, more: Sequence[Any] | None) -> bytes:
    """The end of a page: how many, and links; ``more`` is the sort keys of the page's last
    feature when a next page exists."""
    links = [{"rel": "self", "type": GEOJSON, "href": str(request.url)}]
    if more is not None:
        following = dict(request.query_params) | {"cursor": encode_cursor(more)}
        links.append({"rel": "next", "type": GEOJSON,
                      "href": str(request.url.replace_query_params(**following))})
    return b"]," + json.dumps({"numberReturned": count, "links": links},
                              ensure_ascii=False)[1:].encode()


@router.get("/collections/{layer}/items/{fid}", summary="One feature, with its ETag")
@hot
async def item(request: Request, layer: str, fid: str) -> Response:
    token = bearer_digest(request)
    reject_unknown(request.query_params, {"f", "crs", "asOf"})
    check_format(request.query_params)
    crs = parse_crs("crs", request.query_params.get("crs"))
    as_of = parse_time("asOf", request.query_params.get("asOf"))
    found = get_layer(layer)
    number = id_number(fid) or -1  # no feature has it: a 404
    sql, params = one_feature_sql(found, crs, as_of)
    async with get_pool(request).connection() as conn:
        await token_role(request, conn, token)
        cur = await conn.execute(sql, params | {"layer": found.name, "id": number})
        row = await cur.fetchone()
    if row is None:
        when = f" as of {as_of.isoformat()}" if as_of else ""
        raise NotFound(f"no feature {fid!r} in {layer}{when}")
    # a strong ETag names one representation: the CRS is part of it
    etag = f'"{fid}-{row[1]}"' if crs is CRS84 else f'"{fid}-{row[1]}-{crs.srid}"'
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    base = f"{_base(request)}/collections/{found.name}"
    links = json.dumps([
        {"rel": "self", "type": GEOJSON, "href": f"{base}/items/{fid}"},
        {"rel": "collection", "type": "application/json", "href": base}])
    return Response(row[0][:-1] + f', "links": {links}}}', media_type=GEOJSON,
                    headers={"ETag": etag, "Content-Crs": f"<{crs.uri}>"})


MVT = "application/vnd.mapbox-vector-tile"


@router.get("/collections/{layer}/tiles/WebMercatorQuad/{z}/{x}/{y}",
            summary="A Mapbox vector tile of a layer", response_class=Response)
@hot
async def tile(request: Request, layer: str, z: str, x: str, y: str) -> Response:
    token = bearer_digest(request)
    reject_unknown(request.query_params, set())
    found = get_layer(layer)
    zxy = tile_numbers(z, x, y)
    async with get_pool(request).connection() as conn:
        await token_role(request, conn, token)
        cur = await conn.execute(tile_sql(found), {"layer": found.name,
                                                   "z": zxy[0], "x": zxy[1], "y": zxy[2]})
        row = await cur.fetchone()
    assert row is not None  # scalar subqueries: always one row
    etag = f'"{found.name}-{zxy[0]}-{zxy[1]}-{zxy[2]}-{row[1]}"'
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(bytes(row[0] or b""), media_type=MVT, headers={"ETag": etag})

