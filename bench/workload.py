"""The request list: deterministic (fixed seed) over building centroids, then spelled for
each server.

Q1  ~300 m bbox, limit=100              Q2  one item by id
Q3  ~500 m bbox + use='<value>', 100    Q3b ~500 m bbox + floors>=3, limit=100
Q4  vector tile WebMercatorQuad z16     Q5  ~1 km bbox (inside the extent), limit=5000
"""

# SQL here is composed from numbers and from filter text this module wrote itself.
# ruff: noqa: S608
from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg

M_PER_DEG_LAT = 110_900.0
TABLE = "bench.buildings"


def _q(text: str) -> str:
    return quote(text, safe="")


def build(conn: psycopg.Connection[Any], seed: int, n: int, q3_use: str) -> dict[str, Any]:
    """Boxes, ids and tiles for every query, and what SQL says each should return."""
    rng = random.Random(f"twin-bench:{seed}")  # noqa: S311 (a repeatable sample, not a secret)
    ids = [int(r[0]) for r in conn.execute(f"SELECT id FROM {TABLE} ORDER BY id")]
    ext_row = conn.execute(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                           f"FROM (SELECT ST_Extent(geom) e FROM {TABLE}) s").fetchone()
    assert ext_row is not None
    ext = [float(v) for v in ext_row]
    picked = rng.sample(ids, min(n, len(ids)))
    cents = {int(i): (float(x), float(y)) for i, x, y in conn.execute(
        f"SELECT id, ST_X(c), ST_Y(c) FROM (SELECT id, ST_Centroid(geom) c FROM {TABLE} "
        "WHERE id = ANY(%s)) s", (picked,))}
    centres = [cents[i] for i in picked]
    kx = 111_320.0 * math.cos(math.radians((ext[1] + ext[3]) / 2))

    def square(cx: float, cy: float, side_m: float, clamp: bool = False) -> list[float]:
        hx, hy = side_m / 2 / kx, side_m / 2 / M_PER_DEG_LAT
        if clamp:  # keep the square inside the extent
            cx = min(max(cx, ext[0] + hx), ext[2] - hx)
            cy = min(max(cy, ext[1] + hy), ext[3] - hy)
        return [round(cx - hx, 6), round(cy - hy, 6), round(cx + hx, 6), round(cy + hy, 6)]

    tiles: list[list[int]] = []
    for cx, cy in centres:
        t = tile_of(cx, cy, 16)
        if t not in tiles:
            tiles.append(t)
    third = len(centres) // 3
    boxes_500 = [square(x, y, 500) for x, y in centres[third:2 * third]]
    queries: dict[str, dict[str, Any]] = {
        "Q1": {"kind": "bbox", "what": "~300 m bbox, limit=100", "limit": 100,
               "bboxes": [square(x, y, 300) for x, y in centres[:third]]},
        "Q2": {"kind": "item", "what": "one item by id", "ids": rng.sample(ids, min(n, len(ids)))},
        "Q3": {"kind": "bbox", "what": f"~500 m bbox + use='{q3_use}', limit=100", "limit": 100,
               "prop": ("use", q3_use), "cql2": f"use='{q3_use}'",
               "sql": f"use = '{q3_use.replace(chr(39), chr(39) * 2)}'", "bboxes": boxes_500},
        "Q3b": {"kind": "bbox", "what": "~500 m bbox + floors>=3, limit=100", "limit": 100,
                "cql2": "floors>=3", "sql": "floors >= 3", "bboxes": boxes_500},
        "Q4": {"kind": "tile", "what": "vector tile WebMercatorQuad z16", "tiles": tiles},
        "Q5": {"kind": "bbox", "what": "~1 km bbox, limit=5000", "limit": 5000,
               "bboxes": [square(x, y, 1000, clamp=True)
                          for x, y in centres[2 * third:2 * third + 200]]},
    }
    for spec in queries.values():
        if spec["kind"] == "bbox":
            counts = [count(conn, spec, i) for i in range(len(spec["bboxes"]))]
            spec["matched_mean"] = round(sum(counts) / len(counts), 1)
            returned = [min(c, spec["limit"]) for c in counts]
            spec["returned_mean"] = round(sum(returned) / len(counts), 1)
            spec["full_pages"] = round(sum(c >= spec["limit"] for c in counts) / len(counts), 3)
    return {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": seed,
            "table": TABLE, "rows": len(ids), "extent": ext, "queries": queries}


def tile_of(lon: float, lat: float, z: int) -> list[int]:
    n = 2 ** z
    rad = math.radians(lat)
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.log(math.tan(rad) + 1 / math.cos(rad)) / math.pi) / 2 * n)
    return [z, x, y]


def where_sql(spec: dict[str, Any], i: int) -> str:
    """The WHERE clause (over bench.buildings) that defines the right answer of request i."""
    x0, y0, x1, y1 = spec["bboxes"][i]
    clause = f"ST_Intersects(geom, ST_MakeEnvelope({x0}, {y0}, {x1}, {y1}, 4326))"
    return clause + (f" AND {spec['sql']}" if "sql" in spec else "")


def count(conn: psycopg.Connection[Any], spec: dict[str, Any], i: int) -> int:
    row = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE {where_sql(spec, i)}").fetchone()
    return int(row[0]) if row else 0


def expected_ids(conn: psycopg.Connection[Any], spec: dict[str, Any], i: int) -> list[int]:
    if spec["kind"] == "item":
        return [int(spec["ids"][i])]
    limit = int(spec["limit"])
    return [int(r[0]) for r in conn.execute(
        f"SELECT id FROM {TABLE} WHERE {where_sql(spec, i)} ORDER BY id LIMIT {limit}")]


# ----------------------------------------------------------------------------- spellings
SPELLING: dict[str, dict[str, Any]] = {
    # Twin: OGC API Features + CQL2 text + OGC API Tiles, GeoJSON by default
    "twin": {"collection": "buildings", "fmt": "", "equality": "cql2", "cql_lang": "cql2-text",
             "tiles": "/collections/{c}/tiles/WebMercatorQuad/{z}/{x}/{y}"},
    # tipg: schema-qualified collection ids, CQL2 text, tiles
    "tipg": {"collection": "bench.buildings", "fmt": "f=geojson", "equality": "cql2",
             "cql_lang": "cql2-text",
             "tiles": "/collections/{c}/tiles/WebMercatorQuad/{z}/{x}/{y}"},
    # pygeoapi: equality as property=value, CQL text via pygeofilter; no tiles configured
    "pygeoapi": {"collection": "buildings", "fmt": "f=json", "equality": "property",
                 "cql_lang": "cql-text", "tiles": None},
}


def paths_for(target: str, req: dict[str, Any]) -> dict[str, list[str] | None]:
    """Request paths of each query for one server (None: not expressible in its setup)."""
    sp = SPELLING[target]
    c = _q(sp["collection"])
    items = f"/collections/{c}/items"
    fmt = f"&{sp['fmt']}" if sp["fmt"] else ""
    out: dict[str, list[str] | None] = {}
    for name, spec in req["queries"].items():
        if spec["kind"] == "item":
            out[name] = [f"{items}/{i}" + (f"?{sp['fmt']}" if sp["fmt"] else "")
                         for i in spec["ids"]]
        elif spec["kind"] == "tile":
            tpl = sp["tiles"]
            out[name] = None if tpl is None else [
                tpl.format(c=c, z=z, x=x, y=y) for z, x, y in spec["tiles"]]
        else:
            flt = ""
            if "prop" in spec and sp["equality"] == "property":
                flt = f"&{_q(spec['prop'][0])}={_q(spec['prop'][1])}"
            elif "cql2" in spec:
                flt = f"&filter={_q(spec['cql2'])}&filter-lang={sp['cql_lang']}"
            out[name] = [f"{items}?bbox={','.join(f'{v:.6f}' for v in bb)}&limit={spec['limit']}"
                         f"{flt}{fmt}" for bb in spec["bboxes"]]
    return out
