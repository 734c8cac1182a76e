"""The PostgreSQL floors: each request's whole response body built by one SQL statement and
read by psycopg, with no HTTP server in between.

Two floors share one runner and differ only in the statement:

- ``floor``: Twin's own bodies with Twin's own SQL, over ``twin.features`` as Twin reads it:
  the same feature text (``twin.features.reads.feature_sql``: id, geometry, every property) joined
  into a FeatureCollection with ``numberReturned`` (Twin counts nothing, so neither does this
  floor), one Feature for Q2, and for Q4 an ``ST_AsMVT`` tile as Twin's ``tile_sql`` makes it
  (without its ETag digest). It is the strict floor: it gets faster whenever Twin's SQL does.
- ``floor-ref``: the floor as the shared harness (``../shared/bench``) defines it, which the
  issue's goals refer to: over the plain table ``bench.buildings`` (the rows tipg and pygeoapi
  serve), a FeatureCollection of ``json_build_object`` features (``ST_AsGeoJSON(geom)::json``,
  every column as a property) with ``numberMatched`` from ``count(*)`` over the same WHERE,
  one Feature for Q2, and for Q4 a tipg-like tile (buffer 256, ``ORDER BY id LIMIT 10000``).

``CONNS`` threads with one connection each run the statements in a closed loop, with
client-side binding (``ClientCursor``: PostgreSQL sees literals and plans each statement for
its own box). What a server adds on top of this is its own cost.
"""

# SQL here is composed from the layer registry's names, the bench table's catalogued columns
# and numbers and filter text this package formats itself.
# ruff: noqa: S608
from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import psycopg

from bench.config import Config
from bench.cpu import CpuSampler
from bench.database import Database
from bench.load import gated, per_request, verdict
from bench.workload import TABLE, count, expected_ids

LAYER = "buildings"
MAKE_ENVELOPE = "ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326)"
TILE_ENVELOPE = "ST_TileEnvelope(%(z)s, %(x)s, %(y)s)"


def attribute_sql(name: str) -> str:
    """Twin's typed SQL of an attribute over alias f (``twin.features.cql.column_sql``
    when there)."""
    from twin.registry import get_layer

    layer = get_layer(LAYER)
    try:
        from twin.features.cql import column_sql

        return column_sql(layer, name)
    except (ImportError, KeyError):
        annotation = layer.attributes.model_fields[name].annotation
        return f"(f.props->>'{name}')" + ("::int" if annotation is int else "")


def feature_expr() -> str:
    """Twin's feature text: ``twin.features.reads.feature_sql`` (id, geometry, every property)."""
    from twin.features.reads import feature_sql
    from twin.registry import get_layer

    return feature_sql(get_layer(LAYER), stored=False)


def tile_attributes() -> tuple[str, ...]:
    from twin.registry import get_layer

    names: tuple[str, ...] = getattr(get_layer(LAYER), "tile_attributes", ()) or (
        "use", "floors", "households")
    return names


def twin_filter(spec: dict[str, Any]) -> str:
    """The query's filter over twin.features, as Twin's CQL2 would write it."""
    if "prop" in spec:
        name, value = spec["prop"]
        return f"{attribute_sql(name)} = '{value.replace(chr(39), chr(39) * 2)}'"
    if spec.get("cql2") == "floors>=3":
        return f"{attribute_sql('floors')} >= 3"
    return ""


def twin_statement(spec: dict[str, Any]) -> str:
    """``floor``: Twin's body for one request, from Twin's own SQL over twin.features."""
    kind = spec["kind"]
    if kind == "item":
        return (f"SELECT {feature_expr()} FROM twin.features f "
                f"WHERE f.layer = '{LAYER}' AND f.id = %(id)s")
    if kind == "tile":
        # as Twin's tile_sql: id, name and the tile attributes, buffer 64, && on the envelope
        cols = "".join(f", {attribute_sql(a)} AS \"{a}\"" for a in tile_attributes())
        return (f"SELECT ST_AsMVT(t, '{LAYER}', 4096, 'geom', 'id') FROM ("
                f"SELECT f.id, f.name{cols}, "
                f"ST_AsMVTGeom(ST_Transform(f.geom, 3857), {TILE_ENVELOPE}, 4096, 64, true) "
                "AS geom "
                f"FROM twin.features f WHERE f.layer = '{LAYER}' "
                f"AND f.geom && ST_Transform({TILE_ENVELOPE}, 4326)) t WHERE t.geom IS NOT NULL")
    feature = feature_expr()
    extra = twin_filter(spec)
    where = (f"f.layer = '{LAYER}' AND f.geom && {MAKE_ENVELOPE} "
             f"AND ST_Intersects(f.geom, {MAKE_ENVELOPE})"
             + (f" AND {extra}" if extra else ""))
    return ("SELECT '{\"type\":\"FeatureCollection\",\"features\":[' "
            "|| coalesce(string_agg(t.feature, ',' ORDER BY t.id), '') "
            "|| '],\"numberReturned\":' || count(*) || '}' "
            f"FROM (SELECT {feature} AS feature, f.id FROM twin.features f WHERE {where} "
            f"ORDER BY f.id LIMIT {int(spec['limit'])}) t")



def table_columns(conn: psycopg.Connection[Any], table: str = TABLE) -> list[str]:
    """Every column of the table, in order: floor-ref's properties are all of them."""
    schema, name = table.split(".")
    return [str(r[0]) for r in conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, name))]


def ref_statement(spec: dict[str, Any], columns: list[str], table: str = TABLE) -> str:
    """``floor-ref``: the shared harness's body for one request, over the plain table."""
    props = [c for c in columns if c not in ("id", "geom")]
    if spec["kind"] == "tile":
        # as tipg: every column, extent 4096, buffer 256, clipped, at most 10000 by id
        cols = ", ".join(f'"{c}"' for c in [*props, "id"])
        return (f"WITH t AS (SELECT {cols}, ST_AsMVTGeom(ST_Transform(geom, 3857), "
                f"{TILE_ENVELOPE}, 4096, 256, true) AS geom FROM {table} "
                f"WHERE ST_Intersects(geom, ST_Transform({TILE_ENVELOPE}, 4326)) "
                "ORDER BY id LIMIT 10000) SELECT ST_AsMVT(t.*, 'default') FROM t")
    properties = ", ".join(f"'{c}', t.\"{c}\"" for c in props)
    feature = ("json_build_object('type', 'Feature', 'id', t.id, "
               "'geometry', ST_AsGeoJSON(t.geom)::json, "
               f"'properties', json_build_object({properties}))")
    if spec["kind"] == "item":
        return f"SELECT ({feature})::text FROM {table} t WHERE t.id = %(id)s"
    where = f"ST_Intersects(geom, {MAKE_ENVELOPE})" + (
        f" AND {spec['sql']}" if "sql" in spec else "")
    return ("SELECT json_build_object('type', 'FeatureCollection', "
            f"'numberMatched', (SELECT count(*) FROM {table} WHERE {where}), "
            "'numberReturned', count(t.id), "
            f"'features', coalesce(json_agg({feature} ORDER BY t.id), '[]'::json))::text "
            f"FROM (SELECT * FROM {table} WHERE {where} "
            f"ORDER BY id LIMIT {int(spec['limit'])}) t")


def statement(target: str, spec: dict[str, Any], conn: psycopg.Connection[Any]) -> str:
    """The one statement that answers each request of ``spec`` for the floor ``target``."""
    if target == "floor-ref":
        return ref_statement(spec, table_columns(conn))
    return twin_statement(spec)


def params(spec: dict[str, Any]) -> list[dict[str, Any]]:
    if spec["kind"] == "tile":
        return [{"z": z, "x": x, "y": y} for z, x, y in spec["tiles"]]
    if spec["kind"] == "item":
        return [{"id": i} for i in spec["ids"]]
    return [dict(zip(("x0", "y0", "x1", "y1"), bb, strict=True)) for bb in spec["bboxes"]]


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    i = min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))
    return values[i]


def run_query(cfg: Config, db: Database, sampler: CpuSampler, spec: dict[str, Any],
              sql: str) -> dict[str, Any]:
    """Both floors' load: ``sql`` over every request of ``spec`` in a closed loop."""
    plist = params(spec)

    def measure() -> tuple[dict[str, Any], dict[str, Any]]:
        t_start = time.perf_counter() + 1.0  # connections open first
        t_meas = t_start + cfg.warmup
        t_end = t_meas + cfg.duration
        lat: list[float] = []
        sizes: list[int] = []
        errs: list[str] = []
        lock = threading.Lock()

        def worker(tid: int) -> None:
            try:
                conn = psycopg.connect(db.app, autocommit=True, application_name="bench-floor",
                                       cursor_factory=psycopg.ClientCursor)
            except psycopg.Error as e:
                errs.append(repr(e))
                return
            i = (tid * 997) % len(plist)
            mine: list[float] = []
            mb: list[int] = []
            while time.perf_counter() < t_start:
                time.sleep(0.005)
            with conn:
                while (t0 := time.perf_counter()) < t_end:
                    try:
                        row = conn.execute(sql, plist[i]).fetchone()
                    except psycopg.Error as e:
                        errs.append(repr(e))
                        break
                    t1 = time.perf_counter()
                    if t0 >= t_meas and t1 <= t_end:
                        mine.append(t1 - t0)
                        mb.append(len(row[0]) if row and row[0] is not None else 0)
                    i = (i + 1) % len(plist)
            with lock:
                lat.extend(mine)
                sizes.extend(mb)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(cfg.conns)]
        for t in threads:
            t.start()
        time.sleep(max(0.0, t_meas - time.perf_counter()))
        a = sampler.snap()
        with sampler.tracking() as seen:
            time.sleep(max(0.0, t_end - time.perf_counter()))
        b = sampler.snap()
        for t in threads:
            t.join()
        lat.sort()
        n = len(lat)
        res = {"example_sql": sql, "example_params": plist[0], "n_params": len(plist),
               "requests": n, "rps": round(n / cfg.duration, 2),
               "p50_ms": round(pct(lat, 50) * 1000, 2), "p90_ms": round(pct(lat, 90) * 1000, 2),
               "p99_ms": round(pct(lat, 99) * 1000, 2),
               "mean_ms": round(sum(lat) / n * 1000, 2) if n else 0.0,
               "max_ms": round(lat[-1] * 1000, 2) if n else 0.0,
               "bytes_per_req": round(sum(sizes) / n) if n else 0,
               "errors": {"sql": len(errs)}, "first_error": errs[:1]}
        return res, sampler.delta(a, b, seen)

    entry, cpu, attempts = gated(cfg, sampler, measure)
    per_request(entry, cpu)
    cpu["server_ms_per_req"] = 0.0  # there is no server: the client reads PostgreSQL directly
    entry["cpu"] = cpu
    entry["attempts"] = attempts
    return entry


def check(db: Database, spec: dict[str, Any], sql: str, conn: psycopg.Connection[Any],
          k: int) -> dict[str, Any]:
    """A floor's own answers, checked like a server's: the ids of ORDER BY id LIMIT n, and
    ``numberMatched`` against count(*) where the body has one."""
    rep: dict[str, Any] = {"checked": 0, "ids_equal": 0, "matched_given": 0,
                           "matched_equal": 0, "features": [], "errors": [], "available": True}
    with psycopg.connect(db.app, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
        for i, p in enumerate(params(spec)[:k]):
            row = c.execute(sql, p).fetchone()
            rep["checked"] += 1
            if spec["kind"] == "tile":
                rep["ids_equal"] += int(bool(row and row[0]))
                continue
            doc = json.loads(row[0]) if row and row[0] else {}
            if spec["kind"] == "item":
                got = [doc.get("id")]
            else:
                got = [f["id"] for f in doc.get("features") or []]
                rep["features"].append(len(got))
                if doc.get("numberMatched") is not None:
                    rep["matched_given"] += 1
                    rep["matched_equal"] += int(doc["numberMatched"] == count(conn, spec, i))
            if got == expected_ids(conn, spec, i):
                rep["ids_equal"] += 1
            elif len(rep["errors"]) < 3:
                rep["errors"].append(f"ids differ on request {i}")
    rep["verdict"] = verdict(spec, rep)
    return rep
