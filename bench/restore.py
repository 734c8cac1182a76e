"""Restoring a big twin (issue 22's goal: the scale-20 twin, about 20 GB with its history,
back in under 10 minutes): a twin with a history in a cluster of its own, backed up with
``twin db backup``, then restored two ways, each timed from the command to a twin that
answers:

(a) ``twin db restore --to T --force`` over the running cluster (a bad import undone: the
    files that did not change are kept, pgBackRest's ``--delta``), to a moment T between two
    edits made after the backup; the first edit must be there and the second not;
(b) the data folder lost (another machine, a dead disk): the folder removed, then ``twin db
    restore`` from the repository alone, to the newest archived moment.

    .venv/bin/python -m bench.restore                    # or: make bench-restore

The twin is made once and kept (RESTORE_DIR, default ``.twin/bench/restore``): ``twin sample
--scale RESTORE_SCALE --history RESTORE_CHANGES`` (20 and 2,000,000: about 4 GB, 15 minutes
on 2 CPUs; the full scale-20 history, 10,000,000 changes, takes two hours), so a second run
only backs up and restores. Printed: the cluster's size, each step's seconds, the restore's
rate, and what that rate makes of 20 GB. Results: ``RESTORE_DIR/<stamp>.json``. The cluster is
stopped at the end (RESTORE_DROP=1 removes the folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from twin.settings import Settings
from twin.store.cluster import local_cluster
from twin.store.db import libpq_conninfo

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".venv" / "bin" / "twin"
BASE = Path(os.environ.get("RESTORE_DIR", ROOT / ".twin" / "bench" / "restore")).resolve()
SCALE = int(os.environ.get("RESTORE_SCALE", "20"))
CHANGES = int(os.environ.get("RESTORE_CHANGES", "2000000"))
JOBS = os.environ.get("RESTORE_JOBS", "2")
DB = "twin"
GOAL_GB, GOAL_S = 20.0, 600.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"} | {
        "TWIN_DATA_DIR": str(BASE), "TWIN_DB_NAME": DB, "TWIN_DB_PORT": "5432",
        "TWIN_BACKUP_DIR": str(BASE / "another-disk" / "twin-backups")}


def twin(*args: str) -> float:
    """``twin ARGS`` against the bench's cluster, its output shown; its wall seconds."""
    print("$ twin", *args, flush=True)
    started = time.perf_counter()
    subprocess.run([str(TWIN), *args], env=_env(), cwd=ROOT, check=True)  # noqa: S603
    return time.perf_counter() - started


def _add_point(conninfo: str, name: str) -> datetime:
    """A waste point named ``name`` added (logged as by the database's owner); the server's
    clock just after it committed."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO twin.features (layer, name, geom) VALUES ('waste_points', "
                     "%s, ST_SetSRID(ST_Point(121.51, 31.20), 4326))", (name,))
        moment: datetime = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        return moment


def _holds(conninfo: str, name: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        found: int = conn.execute("SELECT count(*) FROM twin.features WHERE name = %s",
                                  (name,)).fetchone()[0]  # type: ignore[index]
        return found > 0


def main() -> int:
    cluster = local_cluster(Settings(database_url=None, data_dir=BASE, db_name=DB, db_port=5432))
    conninfo = libpq_conninfo(cluster.admin_url)
    result: dict[str, Any] = {"scale": SCALE, "changes_asked": CHANGES}
    twin("db", "start")
    twin("db", "migrate")
    with psycopg.connect(conninfo) as conn:
        have = conn.execute("SELECT count(*) FROM twin.changes").fetchone()[0]  # type: ignore[index]
    if have == 0:
        result["made_s"] = twin("sample", "--scale", str(SCALE), "--cases", "0", "--orders", "0",
                                 "--history", str(CHANGES), "--jobs", JOBS)
    with psycopg.connect(conninfo) as conn:
        result["changes"], result["bytes"] = conn.execute(
            "SELECT (SELECT count(*) FROM twin.changes), "
            "(SELECT sum(pg_database_size(datname))::bigint FROM pg_database)").fetchone()  # type: ignore[misc]
    gb = result["bytes"] / 1e9
    result["backup_s"] = twin("db", "backup", "--type", "full")
    time.sleep(1.5)  # the backup's end is kept in whole seconds: its window opens after
    between = _add_point(conninfo, "bench: before T")
    time.sleep(1)
    _add_point(conninfo, "bench: after T")
    result["delta_s"] = twin("db", "restore", "--to", between.isoformat(), "--force")
    result["delta_right"] = _holds(conninfo, "bench: before T") and not _holds(
        conninfo, "bench: after T")
    twin("db", "stop")
    shutil.rmtree(cluster.pgdata)
    result["lost_s"] = twin("db", "restore")
    result["lost_right"] = _holds(conninfo, "bench: before T")
    twin("db", "stop")
    if os.environ.get("RESTORE_DROP") == "1":
        shutil.rmtree(BASE)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if BASE.exists():
        (BASE / f"{stamp}.json").write_text(json.dumps(result, indent=2))
    print(f"\nthe cluster: {gb:.1f} GB, {result['changes']:,} changes (scale {SCALE})")
    print("| step | s | GB a minute | 20 GB at that rate | goal |\n|---|---:|---:|---:|---|")
    print(f"| twin db backup (full) | {result['backup_s']:.0f} | "
          f"{gb / result['backup_s'] * 60:.1f} | | |")
    for key, label in (("delta_s", "(a) restore --to T --force, over the cluster"),
                       ("lost_s", "(b) restore, the data folder lost")):
        seconds = result[key]
        at_goal = GOAL_GB / gb * seconds
        print(f"| {label} | {seconds:.0f} | {gb / seconds * 60:.1f} | {at_goal / 60:.1f} min | "
              f"< 10 min: {'met' if at_goal < GOAL_S else 'NOT met'} |")
    right = result["delta_right"] and result["lost_right"]
    print(f"each restore holds what it should: {'yes' if right else 'NO'}")
    return 0 if right else 1


if __name__ == "__main__":
    raise SystemExit(main())
