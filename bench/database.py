"""The bench database: Twin's scale-20 sample, plus ``bench.buildings`` for tipg and pygeoapi.

``bench.buildings`` is a plain table copied from ``twin.features_buildings`` (same ids,
geometry and attributes) with a primary key and a GiST index, so tipg and pygeoapi read the
same rows as Twin with the same kind of index. A fingerprint of both decides whether the
copy is rebuilt.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.config import Config
from twin.settings import Settings
from twin.store.cluster import local_cluster
from twin.store.db import database_urls, libpq_conninfo

Log = Callable[[str], None]

FINGERPRINT_TWIN = """
SELECT count(*), md5(string_agg(concat_ws('|', id, name, props->>'use', props->>'floors',
       props->>'households', md5(ST_AsBinary(geom))), ',' ORDER BY id))
FROM twin.features_buildings
"""
FINGERPRINT_BENCH = """
SELECT count(*), md5(string_agg(concat_ws('|', id, name, use, floors, households,
       md5(ST_AsBinary(geom))), ',' ORDER BY id))
FROM bench.buildings
"""
BUILD_BENCH = """
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.buildings;
CREATE TABLE bench.buildings (
    id bigint PRIMARY KEY,
    name text,
    use text,
    floors integer,
    households integer,
    geom geometry(Polygon, 4326) NOT NULL
);
INSERT INTO bench.buildings (id, name, use, floors, households, geom)
SELECT id, name, props->>'use', (props->>'floors')::int, (props->>'households')::int,
       geom::geometry(Polygon, 4326)
FROM twin.features_buildings ORDER BY id;
CREATE INDEX buildings_geom_idx ON bench.buildings USING gist (geom);
COMMENT ON TABLE bench.buildings IS
    'Copy of twin.features_buildings for the tipg/pygeoapi benchmark (bench/database.py)';
"""


@dataclass(frozen=True)
class Database:
    """How to reach the bench database, as superuser and as the service's role."""

    admin: str  # libpq conninfo
    app: str
    host: str  # socket directory (or host name)
    port: int
    dbname: str
    user: str  # the service's role: Twin, tipg, pygeoapi and the floor all read as it
    password: str
    started_cluster: bool  # this run started the local cluster (and stops it at the end)
    postmaster_pid: int | None

    def connect(self, admin: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin if admin else self.app, autocommit=True, **kwargs)


def twin_cli(cfg: Config, *args: str, log: Log) -> None:
    """Run ``.venv/bin/twin`` on the bench database, echoing its last lines."""
    exe = cfg.repo / ".venv" / "bin" / "twin"
    done = subprocess.run([str(exe), *args], cwd=cfg.repo, capture_output=True, text=True,  # noqa: S603
                          env={**os.environ, "TWIN_DB_NAME": cfg.db_name}, check=False)
    for line in (done.stdout + done.stderr).strip().splitlines()[-3:]:
        log(f"  twin {' '.join(args)}: {line.strip()}")
    if done.returncode:
        raise SystemExit(f"twin {' '.join(args)} failed ({done.returncode})")


def prepare(cfg: Config, log: Log) -> Database:
    """Cluster up, schema migrated, sample loaded (once), bench table in step, settings."""
    os.environ["TWIN_DB_NAME"] = cfg.db_name
    # the twin CLI runs in the repository: let this process find the same cluster
    os.environ.setdefault("TWIN_DATA_DIR", str(cfg.repo / ".twin"))
    settings = Settings()
    was_running = True
    if not settings.database_url:
        was_running = local_cluster(settings).is_running()
    twin_cli(cfg, "db", "start", log=log)
    twin_cli(cfg, "db", "migrate", log=log)
    # the features only: the reads measured here touch no case or order, and a scale's
    # cases and orders run through their loops one by one (163,000 cases at scale 20)
    twin_cli(cfg, "sample", "--scale", str(cfg.scale), *cfg.subdistricts_args(), "--if-empty",
             "--cases", "0", "--orders", "0", log=log)
    urls = database_urls(settings)
    admin, app = libpq_conninfo(urls.admin), libpq_conninfo(urls.app)
    parts = conninfo_to_dict(app)
    with psycopg.connect(admin, autocommit=True) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        _bench_table(conn, str(parts["user"]), log)
        _tune(conn, cfg, log)
    return Database(admin=admin, app=app, host=str(parts.get("host", "")),
                    port=int(parts.get("port") or 5432), dbname=str(parts["dbname"]),
                    user=str(parts["user"]), password=str(parts.get("password") or ""),
                    started_cluster=not was_running, postmaster_pid=_ppid(backend[0]) if backend
                    else None)


def _ppid(pid: int) -> int | None:
    """The postmaster is the parent of a backend (only visible when the cluster is local)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, PermissionError):
        return None


def _bench_table(conn: psycopg.Connection[Any], role: str, log: Log) -> None:
    source = conn.execute(FINGERPRINT_TWIN).fetchone()
    exists = conn.execute("SELECT to_regclass('bench.buildings') IS NOT NULL").fetchone()
    copy = conn.execute(FINGERPRINT_BENCH).fetchone() if exists and exists[0] else None
    if copy != source:
        rows = source[0] if source else 0
        log(f"  building bench.buildings from twin.features_buildings ({rows} rows)")
        conn.execute(BUILD_BENCH)
        conn.execute("VACUUM ANALYZE bench.buildings")
        conn.execute("VACUUM ANALYZE twin.features_buildings")
    else:
        log(f"  bench.buildings matches twin.features_buildings ({source and source[0]} rows)")
    conn.execute(f'GRANT USAGE ON SCHEMA bench TO "{role}"')
    conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA bench TO "{role}"')


def _tune(conn: psycopg.Connection[Any], cfg: Config, log: Log) -> None:
    """jit off and no parallel workers on the bench database only (PG_TUNING=0 resets)."""
    name = cfg.db_name.replace('"', '""')
    if cfg.pg_tuning:
        conn.execute(f'ALTER DATABASE "{name}" SET jit = off')
        conn.execute(f'ALTER DATABASE "{name}" SET max_parallel_workers_per_gather = 0')
    else:
        conn.execute(f'ALTER DATABASE "{name}" RESET jit')
        conn.execute(f'ALTER DATABASE "{name}" RESET max_parallel_workers_per_gather')
    log(f"  {cfg.db_name}: jit/parallel tuning {'on' if cfg.pg_tuning else 'off (defaults)'}")


def use_shares(conn: psycopg.Connection[Any]) -> dict[str, float]:
    rows = conn.execute("SELECT use, count(*)::float / sum(count(*)) OVER () FROM bench.buildings "
                        "GROUP BY use ORDER BY 2").fetchall()
    return {str(r[0]): round(float(r[1]), 4) for r in rows}


def choose_q3_use(asked: str, shares: dict[str, float]) -> str:
    """``commercial`` when it is at least 2 % of buildings, else the rarest use that is."""
    if asked != "auto":
        return asked
    if shares.get("commercial", 0.0) >= 0.02:
        return "commercial"
    common = [u for u, s in sorted(shares.items(), key=lambda kv: kv[1]) if s >= 0.02]
    return common[0] if common else "commercial"


def versions(db: Database) -> dict[str, str]:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), postgis_lib_version(), "
            "postgis_geos_version(), current_setting('jit'), "
            "current_setting('max_parallel_workers_per_gather'), "
            "current_setting('shared_buffers'), current_setting('work_mem')").fetchone()
    keys = ("postgresql", "postgis", "geos", "jit", "max_parallel_workers_per_gather",
            "shared_buffers", "work_mem")
    return dict(zip(keys, (str(v) for v in row or ()), strict=False))


def tipg_url(db: Database) -> str:
    """asyncpg URL; a socket directory goes percent-encoded in the host part (tipg's
    pydantic DSN refuses an empty host, and asyncpg ignores ?host= when a host is given)."""
    from urllib.parse import quote

    auth = quote(db.user, safe="") + (":" + quote(db.password, safe="") if db.password else "")
    return f"postgresql://{auth}@{quote(db.host, safe='')}:{db.port}/{quote(db.dbname, safe='')}"


