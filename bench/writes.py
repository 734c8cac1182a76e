"""What one edit costs the database, now and as the write path was at an earlier revision.

    .venv/bin/python -m bench.writes        # or: make bench-writes

Issue 23's goal: a write costs no more than 1.2x what it cost before (WRITES_BASE, the
revision before the stored feature text and the subdistrict code, 1ee6313). In a scratch
database holding the sample twin (scale 1), each edit is one transaction as the API makes it
(the context set, one statement, commit; the commit not waiting for the disk, whose flush
varies more than the triggers cost), timed from the client: an attribute update of a
waste point, a move of one, and an insert followed by its delete. WRITES_N (1,000) of each,
with the trigger functions of this revision and then with WRITES_BASE's (their live SQL files
from git, applied in place; the stored text's NOT NULL lifted meanwhile), in two rounds in
opposite orders, so drift on a noisy machine falls on both. Medians and the ratio now/before.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable

import psycopg

from bench.restore import TWIN
from twin.settings import Settings
from twin.store.cluster import local_cluster
from twin.store.db import libpq_conninfo
from twin.store.sqlfiles import SQL_DIR, sql

N = int(os.environ.get("WRITES_N", "1000"))
BASE = os.environ.get("WRITES_BASE", "1ee6313")
DB = os.environ.get("WRITES_DB", "twin_writes")
# the write path: what every edit of a feature runs
FUNCTIONS = ("code_at", "features_before", "features_after", "reassign")
REPO = SQL_DIR.parents[2]


def _twin(*args: str) -> None:
    env = {**os.environ, "TWIN_DB_NAME": DB}
    subprocess.run([str(TWIN), *args], env=env, check=True, capture_output=True)  # noqa: S603


def _bodies(revision: str | None) -> str:
    """The write path's functions as this checkout has them (None) or as ``revision`` had."""
    if revision is None:
        return "\n".join(sql(f"live/{name}") for name in FUNCTIONS)
    return "\n".join(subprocess.run(  # noqa: S603
        ["git", "show", f"{revision}:twin/store/sql/live/{name}.sql"],  # noqa: S607
        cwd=REPO, check=True, capture_output=True, text=True).stdout for name in FUNCTIONS)


def _use(admin: str, revision: str | None) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(_bodies(revision))
        if revision is None:
            conn.execute("UPDATE twin.features SET geojson = twin.feature_geojson(id, "
                         "ST_AsGeoJSON(geom, 7), name, tags, grid_code, area_code, version, "
                         "valid_from, changed_by, props) WHERE geojson IS NULL")
            conn.execute("ALTER TABLE twin.features ALTER COLUMN geojson SET NOT NULL")
        else:
            conn.execute("ALTER TABLE twin.features ALTER COLUMN geojson DROP NOT NULL")


def _timed(conn: psycopg.Connection, statement: str, params: dict[str, object]) -> float:
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("SELECT twin.set_context('bench', 'worker', 'bench-writes')")
        conn.execute(statement, params)
    return (time.perf_counter() - started) * 1000


def _measure(app: str) -> dict[str, float]:
    """Median ms of each kind of edit, N of each."""
    with psycopg.connect(app) as conn:
        # the database's work, not the disk's: a commit's flush (1-3 ms on this VM's disk,
        # varying) would drown the triggers' cost
        conn.execute("SET synchronous_commit = off")
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM twin.features WHERE layer = 'waste_points' ORDER BY id LIMIT 200")]
        x, y = conn.execute("SELECT ST_X(geom), ST_Y(geom) FROM twin.features "
                            "WHERE id = %s", (ids[0],)).fetchone() or (0.0, 0.0)
        conn.commit()
        kinds: dict[str, Callable[[int], float]] = {
            "attribute update": lambda i: _timed(conn, (
                "UPDATE twin.features SET props = props || jsonb_build_object('bins', %(n)s) "
                "WHERE layer = 'waste_points' AND id = %(id)s"),
                {"n": 1 + i % 7, "id": ids[i % len(ids)]}),
            "move": lambda i: _timed(conn, (
                "UPDATE twin.features SET geom = ST_Translate(geom, %(d)s, 0) "
                "WHERE layer = 'waste_points' AND id = %(id)s"),
                {"d": 1e-6 if (i // len(ids)) % 2 == 0 else -1e-6, "id": ids[i % len(ids)]}),
        }
        out = {kind: statistics.median(run(i) for i in range(N)) for kind, run in kinds.items()}
        pairs = []
        for _ in range(N):
            started = time.perf_counter()
            with conn.transaction():
                conn.execute("SELECT twin.set_context('bench', 'worker', 'bench-writes')")
                made = conn.execute(
                    "INSERT INTO twin.features (layer, props, geom) VALUES ('waste_points', "
                    "'{\"state\": \"ok\", \"bins\": 2}', ST_SetSRID(ST_MakePoint(%s, %s), 4326)) "
                    "RETURNING id", (x + 2e-5, y)).fetchone()
            with conn.transaction():
                conn.execute("SELECT twin.set_context('bench', 'worker', 'bench-writes')")
                conn.execute("DELETE FROM twin.features WHERE layer = 'waste_points' "
                             "AND id = %s", (made[0] if made else -1,))
            pairs.append((time.perf_counter() - started) * 1000)
        out["insert + delete"] = statistics.median(pairs)
    return out


def main() -> None:
    scratch = local_cluster(Settings(db_name=DB))
    server = local_cluster(Settings())  # its own database, to drop the scratch one from
    _twin("db", "start")
    with psycopg.connect(libpq_conninfo(server.admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    _twin("db", "migrate")
    _twin("sample", "--cases", "0", "--orders", "0")
    admin, app = libpq_conninfo(scratch.admin_url), libpq_conninfo(scratch.app_url)
    results: dict[str, dict[str, list[float]]] = {"now": {}, "before": {}}
    for order in (("now", "before"), ("before", "now")):
        for which in order:
            _use(admin, None if which == "now" else BASE)
            for kind, ms in _measure(app).items():
                results[which].setdefault(kind, []).append(ms)
    _use(admin, None)
    print(f"single edits, medians of {N} transactions (ms), two rounds; before = {BASE}")
    print("| edit | before | now | now / before |\n|---|---:|---:|---:|")
    for kind in results["now"]:
        before, now = results["before"][kind], results["now"][kind]
        print(f"| {kind} | {' / '.join(f'{v:.3f}' for v in before)} | "
              f"{' / '.join(f'{v:.3f}' for v in now)} | "
              f"{statistics.mean(now) / statistics.mean(before):.2f}x |")
    with psycopg.connect(libpq_conninfo(server.admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
