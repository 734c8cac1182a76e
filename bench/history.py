"""History at scale: feed pages, a feature's history, asOf against the present, period reports.

    .venv/bin/python -m bench.history                       # sample twin + 1,000,000 changes
    HISTORY_SCALE=20 HISTORY_CHANGES=10000000 .venv/bin/python -m bench.history

The database (``twin_history`` or ``twin_history<scale>``) is made once in Twin's own cluster
with ``twin sample --scale S --history N --jobs J`` (``HISTORY_JOBS``, default one per CPU);
later runs reuse it. A Twin server on a free port answers; each measure is single-client
latency over real HTTP, and the table quotes medians and p90 against the issue's goals.
Results: ``.twin/bench/history/<stamp>.json``.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.twin_server import serve_twin
from twin.sample.history import default_jobs
from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".venv" / "bin" / "twin"
RUNS = int(os.environ.get("HISTORY_RUNS", "40"))
JOBS = int(os.environ.get("HISTORY_JOBS", default_jobs()))


def _env(db: str) -> dict[str, str]:
    return {**os.environ, "TWIN_DB_NAME": db}


def _twin(db: str, *args: str) -> None:
    print("$ twin", *args, flush=True)
    subprocess.run([str(TWIN), *args], env=_env(db), cwd=ROOT, check=True)  # noqa: S603


def _prepare(db: str, scale: int, changes: int) -> str:
    """The database with at least ``changes`` edits after the sample's own load (loaded and
    edited in one command when new, so the load is stamped at the period's start)."""
    _twin(db, "db", "start")
    _twin(db, "db", "migrate")
    conninfo = libpq_conninfo(database_urls(Settings(db_name=db)).admin)
    edits = "SELECT count(*) FROM twin.changes WHERE device IS DISTINCT FROM 'twin sample'"
    with psycopg.connect(conninfo) as conn:
        have = (conn.execute(edits).fetchone() or (0,))[0]
    if changes > have:
        print(f"writing {changes - have:,} changes with {JOBS} connections: about 3,000 a "
              "second with 2 on 2 CPUs", flush=True)
        _twin(db, "sample", "--scale", str(scale), "--if-empty", "--history",
              str(changes - have), "--jobs", str(JOBS))
    _twin(db, "db", "maintain")  # sorts the months that are over by place
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE twin.changes")
        conn.execute("VACUUM ANALYZE twin.feature_versions")
        conn.execute("VACUUM ANALYZE twin.change_counts")  # the report's rollup, fresh too
    return conninfo


def _time(http: httpx.Client, paths: list[str]) -> dict[str, float]:
    """Median and p90 milliseconds of each path in turn (after one warm-up request)."""
    http.get(paths[0]).raise_for_status()
    took = []
    for path in paths:
        start = time.perf_counter()
        response = http.get(path)
        took.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    took.sort()
    return {"median_ms": statistics.median(took), "p90_ms": took[int(0.9 * (len(took) - 1))],
            "n": len(took)}


def _facts(conninfo: str) -> dict[str, Any]:
    """Counts, the period, sample ids and boxes, and bytes per change and per version."""
    with psycopg.connect(conninfo) as conn:
        def one(sql: str) -> Any:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None
        facts: dict[str, Any] = {
            "changes": one("SELECT count(*) FROM twin.changes"),
            "versions": one("SELECT count(*) FROM twin.feature_versions"),
            "features": one("SELECT count(*) FROM twin.features"),
            "first": one("SELECT min(server_time) FROM twin.changes "
                         "WHERE device IS DISTINCT FROM 'twin sample'"),
            "last": one("SELECT max(server_time) FROM twin.changes"),
            "changes_bytes": one("SELECT pg_total_relation_size('twin.changes')"),
            "versions_bytes": one(  # a partitioned table's size is its partitions'
                "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits "
                "WHERE inhparent = 'twin.feature_versions'::regclass"),
        }
        rng = random.Random(7)  # noqa: S311 (a repeatable sample, not a secret)
        edited = [r[0] for r in conn.execute(
            "SELECT feature_id, layer FROM twin.changes WHERE operation = 'update' "
            "ORDER BY id DESC LIMIT 5000")]
        facts["history_ids"] = rng.sample(edited, min(RUNS, len(edited)))
        facts["layer_of"] = dict(conn.execute(
            "SELECT id, layer FROM twin.features WHERE id = ANY(%s)",
            [facts["history_ids"]]).fetchall())
        centres = conn.execute(
            "SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM twin.features "
            "WHERE layer = 'buildings' ORDER BY random() LIMIT %s", [RUNS]).fetchall()
        facts["boxes"] = [f"{x - 0.0015},{y - 0.0013},{x + 0.0015},{y + 0.0013}"
                          for x, y in centres]  # about 300 m by 300 m
        facts["grids"] = [r[0] for r in conn.execute(
            "SELECT DISTINCT grid_code FROM twin.changes WHERE grid_code IS NOT NULL "
            "ORDER BY 1")]
        facts["middle_cursor"] = one("SELECT id FROM twin.changes ORDER BY tx, id "
                                     "OFFSET (SELECT count(*) / 2 FROM twin.changes) LIMIT 1")
    return facts


def measure(url: str, facts: dict[str, Any]) -> dict[str, dict[str, float]]:
    token = httpx.post(f"{url}/auth/token", data={"username": "admin", "password": os.environ.get(
        "TWIN_DEMO_PASSWORD", "twin-demo")}).json()["access_token"]
    first, last = facts["first"], facts["last"]
    middle = (first + (last - first) / 2).isoformat().replace("+", "%2B")
    span = f"from={first.isoformat()}&to={last.isoformat()}".replace("+", "%2B")
    grids = facts["grids"] or [""]
    cases: dict[str, list[str]] = {
        "feed: newest 1,000": ["/changes?limit=1000"] * RUNS,
        "feed: 1,000 oldest-first from the middle": [
            f"/changes?order=oldest&limit=1000&cursor={facts['middle_cursor']}"] * RUNS,
        "feed: 1,000 of one micro-grid": [f"/changes?limit=1000&micro_grid={grids[i % len(grids)]}"
                                          for i in range(RUNS)],
        "a feature's history": [f"/collections/{facts['layer_of'].get(i, 'buildings')}/items/{i}"
                                "/history" for i in facts["history_ids"]],
        "bbox 100 features, present": [f"/collections/buildings/items?bbox={b}&limit=100"
                                       for b in facts["boxes"]],
        "bbox 100 features, asOf mid-period": [
            f"/collections/buildings/items?bbox={b}&limit=100&asOf={middle}"
            for b in facts["boxes"]],
        "report by grid, whole period": [f"/reports/changes?{span}&by=grid"] * min(RUNS, 10),
    }
    results: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=120) as http:
        for name, paths in cases.items():
            print(f"  {name} ...", flush=True)
            results[name] = _time(http, paths)
        # each box read once above, its pages fetched from the kernel or disk; now again
        for name in BOXES:
            print(f"  {name}, again ...", flush=True)
            results[f"{name}, again"] = _time(http, cases[name])
    return results


BOXES = ("bbox 100 features, present", "bbox 100 features, asOf mid-period")


def _ratio(r: dict[str, dict[str, float]], again: str = "") -> str:
    present, past = (r[name + again]["median_ms"] for name in BOXES)
    return f"< 2x present: {past / present:.2f}x"


GOALS: dict[str, Callable[[dict[str, dict[str, float]]], str]] = {
    "feed: newest 1,000": lambda r: "< 50 ms",
    "feed: 1,000 oldest-first from the middle": lambda r: "< 50 ms",
    "feed: 1,000 of one micro-grid": lambda r: "< 50 ms",
    "a feature's history": lambda r: "< 10 ms",
    "bbox 100 features, present": lambda r: "",
    "bbox 100 features, asOf mid-period": _ratio,
    "report by grid, whole period": lambda r: "< 2,000 ms",
    "bbox 100 features, present, again": lambda r: "",
    "bbox 100 features, asOf mid-period, again": lambda r: _ratio(r, ", again"),
}


def main() -> int:
    scale = int(os.environ.get("HISTORY_SCALE", "1"))
    changes = int(os.environ.get("HISTORY_CHANGES", "1000000"))
    db = os.environ.get("HISTORY_DB", "twin_history" + ("" if scale == 1 else str(scale)))
    conninfo = _prepare(db, scale, changes)
    facts = _facts(conninfo)
    server, url = serve_twin(_env(db))
    try:
        results = measure(url, facts)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\n{db}: {facts['features']:,} features, {facts['changes']:,} changes, "
          f"{facts['versions']:,} versions, {facts['first']:%Y-%m-%d} .. {facts['last']:%Y-%m-%d}")
    print(f"storage: {facts['changes_bytes'] / facts['changes']:.0f} B per change (log + "
          f"indexes), {facts['versions_bytes'] / facts['versions']:.0f} B per version\n")
    print("| measure | median ms | p90 ms | n | goal |\n|---|---:|---:|---:|---|")
    for name, cell in results.items():
        print(f"| {name} | {cell['median_ms']:.1f} | {cell['p90_ms']:.1f} | {cell['n']} | "
              f"{GOALS[name](results)} |")
    out = ROOT / ".twin" / "bench" / "history"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}.json").write_text(json.dumps(
        {"db": db, "scale": scale, "facts": {k: v for k, v in facts.items()
                                              if k in ("changes", "versions", "features",
                                                       "changes_bytes", "versions_bytes")},
         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
