"""OGC API - Features: the layers as collections, their items streamed as PostgreSQL built them.

Reads go through psycopg's async pool, not the ORM: PostgreSQL writes each feature's GeoJSON
and Python only joins the texts, so a page costs little more than the query itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from html import escape
from typing import Any

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.deps import SIGN_IN
from api.html import page, wants_html
from api.params import (
    check_format,
    encode_cursor,
    items_query,
    parse_crs,
    reject_unknown,
    tile_numbers,
)
from twin.cql import queryables
from twin.crs import CRS84, SUPPORTED
from twin.errors import InvalidInput, NotFound, Problem, Unauthorized
from twin.layer import Layer
from twin.reads import (
    EXTENT_SQL,
    LAYER_STATE_SQL,
    extent_bbox,
    items_sql,
    one_feature_sql,
    tile_sql,
)
from twin.registry import all_layers, get_layer
from twin.users import EXPIRED, token_digest

router = APIRouter(tags=["features"])
GEOJSON = "application/geo+json"
_CHUNK = 200  # rows per network write and per fetch from PostgreSQL


def _pool(request: Request) -> AsyncConnectionPool[AsyncConnection[Any]]:
    pool: AsyncConnectionPool[AsyncConnection[Any]] = request.app.state.pool
    return pool


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


@router.get("/collections", summary="The layers of the twin", response_model=None)
async def collections(request: Request) -> dict[str, Any] | Response:
    reject_unknown(request.query_params, {"f"})
    check_format(request.query_params)
    base = _base(request)
    token = _token(request)
    async with _pool(request).connection() as conn:
        await _layer_state(conn, None, token)
        docs = [_collection(layer, base, await _extent(conn, layer))
                for layer in all_layers().values()]
    if wants_html(request):
        return _collections_html(docs)
    return {"collections": docs, "links": [
        {"rel": "self", "type": "application/json", "href": f"{base}/collections"}]}


@router.get("/collections/{layer}", summary="One layer", response_model=None)
async def collection(request: Request, layer: str) -> dict[str, Any] | Response:
    reject_unknown(request.query_params, {"f"})
    check_format(request.query_params)
    found = get_layer(layer)
    token = _token(request)
    async with _pool(request).connection() as conn:
        await _layer_state(conn, found, token)
        doc = _collection(found, _base(request), await _extent(conn, found))
    return _collections_html([doc]) if wants_html(request) else doc


def _token(request: Request) -> str:
    """The bearer token's digest; its validity is checked with the request's first query."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(SIGN_IN)
    return str(token_digest(token.strip()))


async def _layer_state(conn: AsyncConnection[Any], layer: Layer | None, token: str) -> int:
    """The layer's newest change id, after checking the token (401 if it is not live)."""
    cur = await conn.execute(LAYER_STATE_SQL, {"layer": layer.name if layer else "",
                                               "token": token})
    row = await cur.fetchone()
    if row is None or row[1] is None:
        raise Unauthorized(EXPIRED)
    return int(row[0])


def _not_modified(request: Request, etag: str) -> bool:
    asked = request.headers.get("if-none-match", "")
    return etag in [tag.strip() for tag in asked.split(",")] or asked.strip() == "*"


@router.get("/collections/{layer}/queryables", summary="What a filter may name",
            response_class=Response)
async def layer_queryables(request: Request, layer: str) -> Response:
    reject_unknown(request.query_params, {"f"})
    found = get_layer(layer)
    token = _token(request)
    async with _pool(request).connection() as conn:
        await _layer_state(conn, found, token)
    return Response(json.dumps(queryables(found, _base(request)), ensure_ascii=False),
                    media_type="application/schema+json")


@router.get("/collections/{layer}/items", summary="Features of a layer, a page at a time",
            response_class=StreamingResponse)
async def items(request: Request, layer: str) -> Response:
    token = _token(request)
    query = items_query(request.query_params, get_layer(layer))
    sql, params = items_sql(query)
    pool = _pool(request)
    conn = await pool.getconn()
    try:
        state = await _layer_state(conn, query.layer, token)
        digest = hashlib.sha1(str(request.query_params).encode(),
                              usedforsecurity=False).hexdigest()[:16]
        etag = f'"{query.layer.name}-{state}-{digest}"'
        if _not_modified(request, etag):
            await pool.putconn(conn)
            return Response(status_code=304, headers={"ETag": etag})
        rows = conn.cursor().stream(sql, params, size=_CHUNK)
        try:
            first = await anext(rows, None)
        except psycopg.DataError as exc:
            raise InvalidInput(f"the query could not be evaluated: {exc}",
                               [Problem("filter", None, str(exc))]) from None
    except BaseException:
        await pool.putconn(conn)
        raise

    async def body() -> AsyncIterator[bytes]:
        """Header, the features as PostgreSQL wrote them, then the count and links."""
        try:
            yield b'{"type":"FeatureCollection","features":['
            count, batch, row = 0, [], first
            last: tuple[Any, ...] = ()
            while row is not None and count < query.limit:
                batch.append(row[0])
                count, last = count + 1, row[1:]
                if len(batch) == _CHUNK:
                    yield ((b"," if count > _CHUNK else b"") + ",".join(batch).encode())
                    batch = []
                row = await anext(rows, None)
            if batch:
                yield ((b"," if count > len(batch) else b"") + ",".join(batch).encode())
            async for _ in rows:  # at most the end of the results: leave the connection idle
                pass
            links = [{"rel": "self", "type": GEOJSON, "href": str(request.url)}]
            if row is not None:  # the one row past the page: there is a next page
                next_params = dict(request.query_params) | {"cursor": encode_cursor(last)}
                links.append({"rel": "next", "type": GEOJSON, "href": str(
                    request.url.replace_query_params(**next_params))})
            tail = {"numberReturned": count, "links": links}
            yield b"]," + json.dumps(tail, ensure_ascii=False)[1:].encode()
        finally:
            await pool.putconn(conn)

    return StreamingResponse(body(), media_type=GEOJSON,
                             headers={"ETag": etag, "Content-Crs": f"<{query.crs.uri}>"})


@router.get("/collections/{layer}/items/{fid}", summary="One feature, with its ETag")
async def item(request: Request, layer: str, fid: str) -> Response:
    token = _token(request)
    reject_unknown(request.query_params, {"f", "crs"})
    check_format(request.query_params)
    crs = parse_crs("crs", request.query_params.get("crs"))
    found = get_layer(layer)
    number = int(fid) if fid.isdigit() and len(fid) <= 18 else -1
    async with _pool(request).connection() as conn:
        cur = await conn.execute(one_feature_sql(found, crs), {"layer": found.name,
                                                               "id": number, "token": token})
        row = await cur.fetchone()
    if row is None or row[2] is None:
        raise Unauthorized(EXPIRED)
    if row[0] is None:
        raise NotFound(f"no feature {fid!r} in {layer}")
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
async def tile(request: Request, layer: str, z: str, x: str, y: str) -> Response:
    token = _token(request)
    reject_unknown(request.query_params, set())
    found = get_layer(layer)
    zxy = tile_numbers(z, x, y)
    async with _pool(request).connection() as conn:
        cur = await conn.execute(tile_sql(found), {"layer": found.name, "token": token,
                                                   "z": zxy[0], "x": zxy[1], "y": zxy[2]})
        row = await cur.fetchone()
    if row is None or row[2] is None:
        raise Unauthorized(EXPIRED)
    etag = f'"{found.name}-{zxy[0]}-{zxy[1]}-{zxy[2]}-{row[1]}"'
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(bytes(row[0] or b""), media_type=MVT, headers={"ETag": etag})
