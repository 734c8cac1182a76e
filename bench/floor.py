"""The PostgreSQL floor: Twin's response bodies built by SQL alone, read by psycopg.

For each request one statement returns the whole body, over ``twin.features`` as Twin reads
it: the same feature text (``twin.reads.feature_sql``: id, geometry, every property), joined
into a FeatureCollection with ``numberReturned`` (Twin counts nothing, so neither does the
floor), one Feature for Q2, and for Q4 an ``ST_AsMVT`` tile as Twin's ``tile_sql`` makes it
(without its ETag digest).
``CONNS`` threads with one connection each run the statements in a closed loop, with
client-side binding (``ClientCursor``: PostgreSQL sees literals and plans each statement for
its own box). What a server adds on top of this is its own cost.
"""

# SQL here is composed from the layer registry's names and numbers this module formats.
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
from bench.load import gated, per_request
from bench.workload import expected_ids

LAYER = "buildings"


def attribute_sql(name: str) -> str:
    """Twin's typed SQL of an attribute over alias f (``twin.cql.column_sql`` when there)."""
    from twin.registry import get_layer

    layer = get_layer(LAYER)
    try:
        from twin.cql import column_sql

        return column_sql(layer, name)
    except (ImportError, KeyError):
        annotation = layer.attributes.model_fields[name].annotation
        return f"(f.props->>'{name}')" + ("::int" if annotation is int else "")


def feature_expr() -> str:
    """Twin's feature text: ``twin.reads.feature_sql`` (id, geometry, every property)."""
    from twin.reads import feature_sql
    from twin.registry import get_layer

    return feature_sql(get_layer(LAYER))


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


def statement(spec: dict[str, Any]) -> str:
    kind = spec["kind"]
    if kind == "item":
        return (f"SELECT {feature_expr()} FROM twin.features f "
                f"WHERE f.layer = '{LAYER}' AND f.id = %(id)s")
    if kind == "tile":
        # as Twin's tile_sql: id, name and the tile attributes, buffer 64, && on the envelope
        cols = "".join(f", {attribute_sql(a)} AS \"{a}\"" for a in tile_attributes())
        env = "ST_TileEnvelope(%(z)s, %(x)s, %(y)s)"
        return (f"SELECT ST_AsMVT(t, '{LAYER}', 4096, 'geom', 'id') FROM ("
                f"SELECT f.id, f.name{cols}, "
                f"ST_AsMVTGeom(ST_Transform(f.geom, 3857), {env}, 4096, 64, true) AS geom "
                f"FROM twin.features f WHERE f.layer = '{LAYER}' "
                f"AND f.geom && ST_Transform({env}, 4326)) t WHERE t.geom IS NOT NULL")
    feature = feature_expr()
    env = "ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326)"
    extra = twin_filter(spec)
    where = (f"f.layer = '{LAYER}' AND f.geom && {env} AND ST_Intersects(f.geom, {env})"
             + (f" AND {extra}" if extra else ""))
    return ("SELECT '{\"type\":\"FeatureCollection\",\"features\":[' "
            "|| coalesce(string_agg(t.feature, ',' ORDER BY t.id), '') "
            "|| '],\"numberReturned\":' || count(*) || '}' "
            f"FROM (SELECT {feature} AS feature, f.id FROM twin.features f WHERE {where} "
            f"ORDER BY f.id LIMIT {int(spec['limit'])}) t")


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
              ) -> dict[str, Any]:
    sql = statement(spec)
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


def check(db: Database, spec: dict[str, Any], conn: psycopg.Connection[Any],
          k: int) -> dict[str, Any]:
    """The floor's own answers, checked like a server's (ids of ORDER BY id LIMIT n)."""
    sql = statement(spec)
    rep: dict[str, Any] = {"checked": 0, "ids_equal": 0, "features": [], "errors": []}
    with psycopg.connect(db.app, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
        for i, p in enumerate(params(spec)[:k]):
            row = c.execute(sql, p).fetchone()
            rep["checked"] += 1
            if spec["kind"] == "tile":
                rep["ids_equal"] += int(bool(row and row[0]))
                continue
            doc = json.loads(row[0]) if row and row[0] else {}
            got = ([doc.get("id")] if spec["kind"] == "item"
                   else [f["id"] for f in doc.get("features", [])])
            if spec["kind"] != "item":
                rep["features"].append(len(got))
            if got == expected_ids(conn, spec, i):
                rep["ids_equal"] += 1
            elif len(rep["errors"]) < 3:
                rep["errors"].append(f"ids differ on request {i}")
    what = "MVT" if spec["kind"] == "tile" else "ids =SQL"
    rep["verdict"] = f"{rep['ids_equal']}/{rep['checked']} {what}" + (
        " ✗" if rep["ids_equal"] < rep["checked"] else "")
    rep["available"] = True
    return rep
