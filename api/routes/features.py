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
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from psycopg import AsyncConnection

from api.deps import bearer_digest, get_pool, get_seen, token_role
from api.errors import NOT_MODIFIED, SIGNED, errors, media
from api.etags import feature_etag, not_modified
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
from api.replicas import read_pool, replica_read
from twin.crs import CRS84, SUPPORTED
from twin.errors import InvalidInput, NotFound, Problem
from twin.features.cql import queryables
from twin.features.reads import (
    COMMON_TITLES,
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

router = APIRouter(tags=["features"], responses=errors(*SIGNED))
GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
MVT = "application/vnd.mapbox-vector-tile"
SCHEMA_REL = "http://www.opengis.net/def/rel/ogc/1.0/schema"
_CHUNK = 500  # features per row from PostgreSQL (and per network write when streaming)
# what a URI may hold besides letters, digits and -._ (RFC 3986), and a Link header can
# carry as it is; the rest is %-encoded (' too: header parsers strip quotes from an href's ends)
_URI_CHARS = "!#$%&()*+,/:;=?@[]~"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _as(request: Request, f: str) -> str:
    """This request's URL asking for format ``f``: the other representation's link."""
    return str(request.url.include_query_params(f=f))


def link_header(links: list[dict[str, str]]) -> str:
    """A body's links as a ``Link`` header (RFC 8288), as OGC API - Features recommends
    (Part 1, /rec/core/fc-link-header): a client pages without parsing the body. Titles stay
    in the body (header values are Latin-1); an href is %-encoded where a URI may not hold a
    character (a filter's raw ``>`` would end the ``<...>``)."""
    return ", ".join(f'<{quote(link["href"], safe=_URI_CHARS)}>; rel="{link["rel"]}"; '
                     f'type="{link["type"]}"' for link in links)


def _href(doc: dict[str, Any], rel: str) -> str:
    return str(next(link["href"] for link in doc["links"] if link["rel"] == rel))


def _collection(layer: Layer, base: str, bbox: list[float] | None, count: int
                ) -> dict[str, Any]:
    href = f"{base}/collections/{layer.name}"
    doc: dict[str, Any] = {
        "id": layer.name,
        "title": layer.title,
        "description": layer.description,
        "itemType": "feature",
        "crs": list(SUPPORTED),
        "storageCrs": CRS84.uri,
        "itemCount": count,
        "links": [
            {"rel": "self", "type": JSON, "title": layer.title, "href": href},
            {"rel": "alternate", "type": HTML, "title": f"{layer.title} (HTML)",
             "href": f"{href}?f=html"},
            {"rel": "items", "type": GEOJSON, "title": f"{layer.title} items",
             "href": f"{href}/items"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "queryables",
             "href": f"{href}/queryables"},
            {"rel": SCHEMA_REL, "type": "application/schema+json",
             "title": "schema (OGC API - Features Part 5)", "href": f"{href}/schema"},
        ],
    }
    if bbox:
        doc["extent"] = {"spatial": {"bbox": [bbox], "crs": CRS84.uri}}
    return doc


async def _extent(conn: AsyncConnection[Any], layer: Layer) -> tuple[list[float] | None, int]:
    """The layer's bounding box and its count."""
    cur = await conn.execute(EXTENT_SQL, {"table": f"features_{layer.name}",
                                          "layer": layer.name})
    row = await cur.fetchone()
    return (extent_bbox(row[0]), int(row[1])) if row else (None, 0)


def _collections_html(docs: list[dict[str, Any]]) -> Response:
    rows = "".join(
        f"<tr><td><a href='{escape(_href(d, 'alternate'))}'>{escape(d['title'])}</a></td>"
        f"<td>{escape(d['description'])}</td><td>{d['itemCount']:,}</td>"
        f"<td><a href='{escape(_href(d, 'items'))}?f=html'>items 要素</a> · "
        f"<a href='{escape(_href(d, SCHEMA_REL))}'>schema 模式</a></td></tr>" for d in docs)
    return page("图层 Layers", f"<table><tr><th>图层 layer</th><th>说明 description</th>"
                f"<th>要素数 features</th><th></th></tr>{rows}</table>")


async def _documents(request: Request, layers: list[Layer]) -> list[dict[str, Any]]:
    """Collection documents of ``layers``, after checking the parameters and the token."""
    reject_unknown(request.query_params, {"f"})
    check_format(request.query_params)
    token = bearer_digest(request)
    async with get_pool(request).connection() as conn:
        await token_role(request, conn, token)
        return [_collection(layer, _base(request), *await _extent(conn, layer))
                for layer in layers]


@router.get("/collections", summary="The layers of the twin", response_model=None,
            responses=media(JSON, HTML))
async def collections(request: Request) -> dict[str, Any] | Response:
    docs = await _documents(request, list(all_layers().values()))
    if wants_html(request):
        return _collections_html(docs)
    return {"collections": docs, "links": [
        {"rel": "self", "type": "application/json", "href": f"{_base(request)}/collections"}]}


@router.get("/collections/{layer}", summary="One layer", response_model=None,
            responses=media(JSON, HTML) | errors(404))
async def collection(request: Request, layer: str) -> Response:
    """The layer's description; its links in a ``Link`` header too (self and alternate
    swap places in the HTML page's)."""
    (doc,) = await _documents(request, [get_layer(layer)])
    links: list[dict[str, str]] = doc["links"]
    if not wants_html(request):
        answer: Response = JSONResponse(doc)
    else:
        answer = _collections_html([doc])
        links = [{"rel": "self", "type": HTML, "href": _href(doc, "alternate")},
                 {"rel": "alternate", "type": JSON, "href": _href(doc, "self")},
                 *(link for link in links if link["rel"] not in ("self", "alternate"))]
    answer.headers["Link"] = link_header(links)
    return answer


@router.get("/collections/{layer}/queryables", summary="What a filter may name",
            response_class=Response,
            responses=media("application/schema+json") | errors(404))
async def layer_queryables(request: Request, layer: str) -> Response:
    reject_unknown(request.query_params, {"f"})
    found = get_layer(layer)
    token = bearer_digest(request)
    async with get_pool(request).connection() as conn:
        await token_role(request, conn, token)
    return Response(json.dumps(queryables(found, _base(request)), ensure_ascii=False),
                    media_type="application/schema+json")


@router.get("/collections/{layer}/items", summary="Features of a layer, a page at a time",
            response_class=StreamingResponse,
            responses=media(GEOJSON, HTML) | NOT_MODIFIED | errors(404))
@hot
@replica_read
async def items(request: Request, layer: str) -> Response:
    """A page of up to one chunk is one row, fetched whole (its statement prepared after a
    few uses); a larger one streams a chunk at a time, so memory stays flat whatever the
    limit. ``f=html`` (or a browser's Accept) gives the page as a table."""
    token = bearer_digest(request)
    query = items_query(request.query_params, get_layer(layer))
    if wants_html(request):
        return await _items_html(request, query, token)
    if query.limit <= _CHUNK:
        async with read_pool(request).connection() as conn:
            sql, params, role = await _page_statement(request, conn, query, token)
            with _evaluation_errors():
                row = await (await conn.execute(sql, params, binary=True)).fetchone()
        assert row is not None  # an aggregate without GROUP BY: always one row
        text, found, digest, matched, versions, *last = row
        get_seen(request).saw(role, token, query.layer.name, versions)
        etag = _items_etag(request, query, found, digest, matched)
        if not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag})
        links = _page_links(request, last if found > query.limit else None)
        return Response(_HEAD + (text or b"") + _tail(min(found, query.limit), matched, links),
                        media_type=GEOJSON, headers=_page_headers(etag, query, links))
    return await _stream(request, query, token)


async def _page_statement(request: Request, conn: AsyncConnection[Any], query: ItemsQuery,
                          token: str) -> tuple[str, dict[str, Any], str]:
    """The page's statement and the token's role, once the token is checked: the statement
    gives the (id, version) of the page's features only when that role's reads are kept
    (api.seen), so every other read stays as it was."""
    role = await token_role(request, conn, token)
    sql, params = page_sql(query, _CHUNK, versions=get_seen(request).kept_for(role))
    return sql, params, role


async def _stream(request: Request, query: ItemsQuery, token: str) -> Response:
    """A large page: the first chunk read before answering (it carries the ETag and the next
    page's keys), the others sent as PostgreSQL sends them; the connection goes back to the
    pool at the end."""
    pool = read_pool(request)
    conn = await pool.getconn()
    try:
        sql, params, role = await _page_statement(request, conn, query, token)
        rows = conn.cursor().stream(sql, params, binary=True, size=1)
        with _evaluation_errors():
            first = await anext(rows, None)
    except BaseException:
        await pool.putconn(conn)
        raise
    found, digest, matched = (first[1], first[2], first[3]) if first else (0, None, None)
    etag = _items_etag(request, query, found, digest, matched)
    links = _page_links(request, first[5:] if first and found > query.limit else None)
    if first is None or not_modified(request, etag):
        await pool.putconn(conn)  # an unfinished stream (a 304): the pool resets it
        if not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(_HEAD + _tail(0, None, links), media_type=GEOJSON,
                        headers=_page_headers(etag, query, links))
    seen = get_seen(request)

    async def body() -> AsyncIterator[bytes]:
        """The first chunk, the others as PostgreSQL sends them, then count and links; the
        versions of each chunk kept once it is sent (api.seen)."""
        try:
            yield _HEAD + first[0]
            seen.saw(role, token, query.layer.name, first[4])
            async for chunk in rows:
                yield b"," + chunk[0]
                seen.saw(role, token, query.layer.name, chunk[4])
            yield _tail(min(found, query.limit), matched, links)
        finally:
            await pool.putconn(conn)

    return StreamingResponse(body(), media_type=GEOJSON,
                             headers=_page_headers(etag, query, links))


@contextmanager
def _evaluation_errors() -> Iterator[None]:
    """A filter PostgreSQL cannot evaluate (a bad cast, say) is the client's error: 400."""
    try:
        yield
    except psycopg.DataError as exc:
        raise InvalidInput(f"the query could not be evaluated: {exc}",
                           [Problem("filter", None, str(exc))]) from None


def _items_etag(request: Request, query: ItemsQuery, found: int, rows: int | None,
                matched: int | None) -> str:
    """A page's strong ETag: how many rows and the digest of their (id, version), the
    layer's count when the page gives it (numberMatched is in the body), and the exact
    query."""
    asked = hashlib.sha1(str(request.query_params).encode(),
                         usedforsecurity=False).hexdigest()[:16]
    counted = "" if matched is None else f".{matched}"
    return (f'"{query.layer.name}-{found}{counted}-{(rows or 0) & 0xFFFFFFFFFFFFFFFF:x}'
            f'-{asked}"')


def _page_headers(etag: str, query: ItemsQuery, links: list[dict[str, str]]
                  ) -> dict[str, str]:
    return {"ETag": etag, "Content-Crs": f"<{query.crs.uri}>", "Link": link_header(links)}


_HEAD = b'{"type":"FeatureCollection","features":['


def _page_links(request: Request, more: Sequence[Any] | None, html: bool = False
                ) -> list[dict[str, str]]:
    """A page's links: itself, the same page in the other format, and the next page (in
    this page's format) when ``more`` holds the sort keys of this page's last feature."""
    mine, other = (HTML, GEOJSON) if html else (GEOJSON, HTML)
    links = [{"rel": "self", "type": mine, "href": str(request.url)},
             {"rel": "alternate", "type": other, "href": _as(request, "json" if html
                                                              else "html")}]
    if more is not None:
        links.append({"rel": "next", "type": mine, "href": str(
            request.url.include_query_params(cursor=encode_cursor(more)))})
    return links


def _tail(count: int, matched: int | None, links: list[dict[str, str]]) -> bytes:
    """The end of a page: how many (of how many, when counted), and links."""
    tail: dict[str, Any] = {"numberReturned": count}
    if matched is not None:
        tail["numberMatched"] = matched
    tail["links"] = links
    return b"]," + json.dumps(tail, ensure_ascii=False)[1:].encode()


async def _items_html(request: Request, query: ItemsQuery, token: str) -> Response:
    """A page as a table for a browser: the same statement, every chunk read first."""
    async with read_pool(request).connection() as conn:
        sql, params, role = await _page_statement(request, conn, query, token)
        with _evaluation_errors():
            rows = await (await conn.execute(sql, params, binary=True)).fetchall()
    for row in rows:
        get_seen(request).saw(role, token, query.layer.name, row[4])
    found, matched, last = (rows[0][1], rows[0][3], rows[0][5:]) if rows else (0, None, [])
    features = json.loads(b"[" + b",".join(bytes(row[0]) for row in rows if row[0]) + b"]")
    links = _page_links(request, last if found > query.limit else None, html=True)
    answer = page(f"{query.layer.title} 要素 Features",
                  _features_table(request, query.layer, features, matched, links))
    answer.headers["Link"] = link_header(links)
    return answer


def _label(layer: Layer, name: str) -> str:
    return COMMON_TITLES.get(name) or layer.field_label(name)


def _cell(layer: Layer, name: str, value: Any) -> str:
    """A property's value as a person reads it: a state by its label, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是 yes" if value else "否 no"
    if isinstance(value, list):
        return escape(", ".join(str(v) for v in value))
    if name == layer.state_field:
        return escape(layer.state_labels.get(str(value), str(value)))
    return escape(str(value))


def _features_table(request: Request, layer: Layer, features: list[dict[str, Any]],
                    matched: int | None, links: list[dict[str, str]]) -> str:
    """The page's features, a row each: id (to the feature's page), geometry type, then
    each property under its bilingual title."""
    names: dict[str, None] = {}
    for feature in features:
        names.update(dict.fromkeys(feature["properties"]))
    base = f"{_base(request)}/collections/{layer.name}"
    head = "".join(f"<th>{escape(_label(layer, name))}</th>" for name in names)
    rows = "".join(
        f"<tr><td><a href='{base}/items/{f['id']}?f=html'>{f['id']}</a></td>"
        f"<td>{escape((f.get('geometry') or {}).get('type', ''))}</td>"
        + "".join(f"<td>{_cell(layer, n, f['properties'].get(n))}</td>" for n in names)
        + "</tr>" for f in features)
    count = f"{len(features):,} 个要素 features" + (
        f",共 {matched:,} of {matched:,}" if matched is not None else "")
    nav = [f"<a href='{escape(base)}?f=html'>图层 Layer</a>",
           *(f"<a href='{escape(link['href'])}'>{label}</a>" for link in links
             for rel, label in (("alternate", "GeoJSON"), ("next", "下一页 Next page"))
             if link["rel"] == rel)]
    return (f"<p>{count}</p><p>{' · '.join(nav)}</p><div style='overflow-x:auto'><table>"
            f"<tr><th>{COMMON_TITLES['id']}</th><th>{COMMON_TITLES['geometry']}</th>{head}"
            f"</tr>{rows}</table></div>")


@router.get("/collections/{layer}/items/{fid}", summary="One feature, with its ETag",
            response_class=Response,
            responses=media(GEOJSON, HTML) | NOT_MODIFIED | errors(404))
@hot
@replica_read
async def item(request: Request, layer: str, fid: str) -> Response:
    token = bearer_digest(request)
    reject_unknown(request.query_params, {"f", "crs", "asOf"})
    check_format(request.query_params)
    crs = parse_crs("crs", request.query_params.get("crs"))
    as_of = parse_time("asOf", request.query_params.get("asOf"))
    found = get_layer(layer)
    number = id_number(fid) or -1  # no feature has it: a 404
    sql, params = one_feature_sql(found, crs, as_of)
    async with read_pool(request).connection() as conn:
        role = await token_role(request, conn, token)
        cur = await conn.execute(sql, params | {"layer": found.name, "id": number})
        row = await cur.fetchone()
    if row is None:
        when = f" as of {as_of.isoformat()}" if as_of else ""
        raise NotFound(f"no feature {fid!r} in {layer}{when}")
    get_seen(request).saw(role, token, found.name, [(number, row[1])])
    base = f"{_base(request)}/collections/{found.name}"
    if wants_html(request):
        return _feature_page(found, json.loads(row[0]), base)
    etag = feature_etag(number, row[1], crs)
    if not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    links = [{"rel": "self", "type": GEOJSON, "href": f"{base}/items/{fid}"},
             {"rel": "alternate", "type": HTML, "href": f"{base}/items/{fid}?f=html"},
             {"rel": "collection", "type": JSON, "href": base}]
    return Response(row[0][:-1] + f', "links": {json.dumps(links)}}}', media_type=GEOJSON,
                    headers={"ETag": etag, "Content-Crs": f"<{crs.uri}>",
                             "Link": link_header(links)})


def _feature_page(layer: Layer, feature: dict[str, Any], base: str) -> Response:
    """One feature for a browser: each property under its bilingual title."""
    fid = feature["id"]
    geometry = feature.get("geometry") or {}
    where = geometry.get("type", "")
    if where == "Point":
        where += " " + ", ".join(str(c) for c in geometry["coordinates"])
    rows = [(COMMON_TITLES["id"], str(fid)), (COMMON_TITLES["geometry"], escape(where)),
            *((_label(layer, name), _cell(layer, name, value))
              for name, value in feature["properties"].items())]
    links = [{"rel": "self", "type": HTML, "href": f"{base}/items/{fid}?f=html"},
             {"rel": "alternate", "type": GEOJSON, "href": f"{base}/items/{fid}"},
             {"rel": "collection", "type": HTML, "href": f"{base}/items?f=html"}]
    answer = page(f"{layer.title} {fid}", (
        f"<p><a href='{escape(links[1]['href'])}'>GeoJSON</a> · "
        f"<a href='{escape(links[2]['href'])}'>{escape(layer.title)}</a></p><table>"
        + "".join(f"<tr><th>{escape(label)}</th><td>{value}</td></tr>" for label, value in rows)
        + "</table>"))
    answer.headers["Link"] = link_header(links)
    return answer


@router.get("/collections/{layer}/tiles/WebMercatorQuad/{z}/{x}/{y}",
            summary="A Mapbox vector tile of a layer", response_class=Response,
            responses=media(MVT) | NOT_MODIFIED | errors(404))
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
    if not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(bytes(row[0] or b""), media_type=MVT, headers={"ETag": etag})

