"""Real data in at scale (issue 21): ``twin import`` of a 100,000-building GeoPackage against
``ogr2ogr -f PostgreSQL`` (COPY) loading the same file into a plain PostGIS table, side by
side on the same cluster; the unchanged file imported again; a million buildings with the
process's peak memory (``IMPORT_BIG=1``: about 15 minutes more).

    .venv/bin/python -m bench.imports        # or: make bench-imports

The file (made once into ``.twin/bench/imports/``): buildings of 8-20 m a side at random
points inside the sample's micro-grids, in CGCS2000 / 3-degree Gauss-Kruger CM 121E
(EPSG:4549), as a surveyor hands them over, fields 编号 (the id), use, 层数 (floors, mapped
with ``--map 层数=floors``), households. Each run imports into a fresh copy of the template
``twin_bench_import`` (the sample twin without cases and orders, jit off).

(a) ogr2ogr, reprojecting to EPSG:4326 as Twin does, PG_USE_COPY, into a new plain table;
(b) ``twin import FILE buildings --id 编号 --map 层数=floors``, a process timed end to end:
    every row checked by the layer's model and the subdistrict's outline, every change logged;
(c) (b) again with the same file: nothing changes;
(d) with ``IMPORT_BIG=1``: 1,000,000 buildings, time and the process's peak resident memory.

Knobs: ``IMPORT_ROWS`` (100,000), ``IMPORT_RUNS`` (3, medians), ``IMPORT_BIG``,
``IMPORT_DB``. Results: ``.twin/bench/imports/<stamp>.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import psycopg
import shapely

from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".venv" / "bin" / "twin"
OUT = ROOT / ".twin" / "bench" / "imports"
ROWS = int(os.environ.get("IMPORT_ROWS", "100000"))
RUNS = int(os.environ.get("IMPORT_RUNS", "3"))
BASE = os.environ.get("IMPORT_DB", "twin_bench_import")
RUN = f"{BASE}_run"
IMPORT_ARGS = ("buildings", "--id", "编号", "--map", "层数=floors")


def _admin(db: str) -> str:
    return libpq_conninfo(database_urls(Settings(db_name=db)).admin)


def _maintenance(db: str) -> str:
    return _admin(db).replace(f"dbname={db}", "dbname=postgres")


# Runs a command and prints its peak resident memory in kB. The kernel keeps, across
# fork and exec, the memory high-water mark of the process that forked: ``twin`` forked by
# this bench (which made a million buildings in memory) was reported with the bench's own
# 1.6 GB. Forked from this small process it carries only its own.
_PEAK = ("import os, subprocess, sys\n"
         "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
         "_, status, usage = os.wait4(child.pid, 0)\n"
         "print(usage.ru_maxrss)\n"
         "sys.exit(os.waitstatus_to_exitcode(status))")


def _twin(db: str, *args: str) -> tuple[float, float]:
    """Run ``twin`` against ``db``: its wall time in seconds and its own peak resident memory
    in MB."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK, str(TWIN), *args],  # noqa: S603
                          env={**os.environ, "TWIN_DB_NAME": db}, cwd=ROOT, check=True,
                          stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - started, int(done.stdout.split()[-1]) / 1024


def _prepare() -> None:
    """The template (the sample twin, no cases or orders; made once) and a fresh copy."""
    _twin(BASE, "db", "start")
    with psycopg.connect(_maintenance(BASE), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BASE,)
                        ).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{BASE}"')
            conn.execute(f'ALTER DATABASE "{BASE}" SET jit = off')
    _twin(BASE, "db", "migrate")
    with psycopg.connect(_admin(BASE)) as conn:
        features = (conn.execute("SELECT count(*) FROM twin.features").fetchone() or (0,))[0]
    if not features:
        _twin(BASE, "sample", "--cases", "0", "--orders", "0")
    _fresh()


def _fresh() -> None:
    with psycopg.connect(_maintenance(BASE), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{RUN}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{RUN}" TEMPLATE "{BASE}"')


def _buildings(n: int) -> Path:
    """``n`` buildings inside the sample's micro-grids as a surveyor's GeoPackage (once)."""
    path = OUT / f"buildings-{n}.gpkg"
    if path.is_file():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(_admin(BASE)) as conn:
        row = conn.execute("SELECT ST_AsBinary(ST_Buffer(ST_Union(geom), -0.0003)) "
                           "FROM twin.features WHERE layer = 'micro_grids'").fetchone()
    assert row is not None
    outline = shapely.from_wkb(bytes(row[0]))
    shapely.prepare(outline)
    rng = np.random.default_rng(21)
    x0, y0, x1, y1 = outline.bounds
    points: list[Any] = []
    while len(points) < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(n, 2))
        candidates = shapely.points(xy)
        points.extend(candidates[shapely.contains(outline, candidates)])
    centres = gpd.GeoSeries(points[:n], crs=4326).to_crs(4549)
    half = rng.uniform(4, 10, size=n)
    boxes = shapely.box(centres.x - half, centres.y - half, centres.x + half, centres.y + half)
    uses = np.array(["residential", "commercial", "public", "mixed"])
    frame = gpd.GeoDataFrame({
        "编号": [f"JZ{i:07d}" for i in range(n)],
        "use": uses[rng.integers(0, len(uses), n)],
        "层数": rng.integers(1, 33, n),
        "households": rng.integers(0, 200, n)}, geometry=boxes, crs=4549)
    frame.to_file(path, driver="GPKG", layer="buildings")
    return path


def _ogr2ogr(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["ogr2ogr", "-f", "PostgreSQL", f"PG:{_admin(RUN)}",  # noqa: S603, S607
                    str(path), "-nln", "ogr_buildings", "-overwrite", "-t_srs", "EPSG:4326",
                    "-lco", "GEOMETRY_NAME=geom", "--config", "PG_USE_COPY", "YES"],
                   check=True)
    return time.perf_counter() - started


def main() -> int:
    _prepare()
    path = _buildings(ROWS)
    results: dict[str, Any] = {"rows": ROWS, "runs": RUNS}
    ogr: list[float] = []
    first: list[float] = []
    again: list[float] = []
    peaks: list[float] = []
    for _ in range(RUNS):
        _fresh()
        ogr.append(_ogr2ogr(path))
        for times in (first, again):
            seconds, peak = _twin(RUN, "import", str(path), *IMPORT_ARGS)
            times.append(seconds)
            peaks.append(peak)
    results.update({"ogr2ogr_s": ogr, "import_s": first, "reimport_s": again,
                    "peak_mb": max(peaks)})
    if os.environ.get("IMPORT_BIG") == "1":
        big = _buildings(1_000_000)
        _fresh()
        results["big_s"], results["big_peak_mb"] = _twin(RUN, "import", str(big), *IMPORT_ARGS)
    o, f, a = (statistics.median(v) for v in (ogr, first, again))
    print(f"\n{ROWS:,} buildings, median of {RUNS}; the import's peak {results['peak_mb']:.0f} MB")
    print("| measure | median s | ratio | goal | met |\n|---|---:|---:|---:|---|")
    print(f"| (a) ogr2ogr -f PostgreSQL (COPY) | {o:.1f} | 1.0 | | |")
    print(f"| (b) twin import | {f:.1f} | {f / o:.1f} x ogr2ogr | <= 2 x | "
          f"{'yes' if f <= 2 * o else 'NO'} |")
    print(f"| (c) the same file again | {a:.1f} | {a / f:.2f} x (b) | < 0.33 x | "
          f"{'yes' if a < f / 3 else 'NO'} |")
    if "big_s" in results:
        print(f"| (d) 1,000,000 buildings | {results['big_s']:.0f} | peak "
              f"{results['big_peak_mb']:.0f} MB | < 300 s, < 500 MB | "
              f"{'yes' if results['big_s'] < 300 and results['big_peak_mb'] < 500 else 'NO'} |")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    with psycopg.connect(_maintenance(BASE), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{RUN}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
