"""Read replicas: streaming standbys of the twin's own cluster, made and followed by
PostgreSQL's own replication (``pg_basebackup -R``, a physical replication slot each, so the
primary keeps the WAL a replica has not received yet).

Each lives beside the cluster in ``replicas/<n>/`` with its own socket, here on the same
machine (elsewhere, the same commands on another host). A replica answers reads only and may
be a moment behind."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import Conflict, DatabaseUnavailable, NotFound, Problem
from twin.store.cluster import Cluster

_PERCENT = re.compile(r"\((\d+)%\)")  # pg_basebackup --progress: "... (42%), 1/1 tablespace"


@dataclass(frozen=True)
class Replica:
    number: int
    cluster: Cluster

    @property
    def slot(self) -> str:
        """Its replication slot on the primary, and its name there (cluster_name)."""
        return f"twin_replica_{self.number}"


def _folder(primary: Cluster) -> Path:
    return primary.pgdata.parent / "replicas"


def replicas(primary: Cluster) -> list[Replica]:
    """The replicas made of ``primary``, by number."""
    folder = _folder(primary)
    numbers = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.is_dir() else []
    return [Replica(n, primary.scratch(folder / str(n))) for n in numbers]


def replica(primary: Cluster, number: int) -> Replica:
    found = [r for r in replicas(primary) if r.number == number]
    if not found:
        raise NotFound(f"no replica {number}: `twin db replica list` shows them",
                       [Problem("replica", number, "no such replica", "没有该只读副本")])
    return found[0]


def add_replica(primary: Cluster, progress: Callable[[int], None] | None = None) -> Replica:
    """A new replica of the running ``primary``, copied whole and then streaming, started."""
    if not primary.is_running():
        raise Conflict("the cluster is not running: `twin db start`, then add a replica")
    number = max((r.number for r in replicas(primary)), default=0) + 1
    new = Replica(number, primary.scratch(_folder(primary) / str(number)))
    _folder(primary).mkdir(parents=True, exist_ok=True)
    if primary.run_as:
        shutil.chown(_folder(primary), primary.run_as, primary.run_as)
    new.cluster.prepare_dirs()
    done = 0
    try:
        for line in primary.stream([
                str(primary.bindir / "pg_basebackup"), "-h", str(primary.socket_dir),
                "-p", str(primary.port), "-U", "postgres", "-D", str(new.cluster.pgdata),
                "--write-recovery-conf", "--wal-method=stream", "--create-slot",
                f"--slot={new.slot}", "--checkpoint=fast", "--progress"]):
            share = _PERCENT.search(line)
            if progress and share:
                progress(int(share.group(1)) - done)
                done = int(share.group(1))
    except DatabaseUnavailable:
        _forget(primary, new)
        raise
    new.cluster.start_standby(new.slot)
    return new


def remove_replica(primary: Cluster, gone: Replica) -> None:
    """Stop the replica, delete its folder and its slot (the primary keeps no WAL for it)."""
    gone.cluster.stop()
    _forget(primary, gone)


def _forget(primary: Cluster, gone: Replica) -> None:
    shutil.rmtree(gone.cluster.pgdata.parent, ignore_errors=True)
    if primary.is_running():
        # the slot's name is ours, never a request's
        primary.psql(f"SELECT pg_drop_replication_slot('{gone.slot}') "  # noqa: S608
                     f"WHERE EXISTS (SELECT FROM pg_replication_slots "
                     f"WHERE slot_name = '{gone.slot}')")


def start_replicas(primary: Cluster) -> list[Replica]:
    """Start the replicas that are stopped (after the primary, which they follow)."""
    started = [r for r in replicas(primary) if not r.cluster.is_running()]
    for r in started:
        r.cluster.start_standby(r.slot)
    return started


def stop_replicas(primary: Cluster) -> list[Replica]:
    return [r for r in replicas(primary) if r.cluster.stop()]


def standing(primary: Cluster) -> list[dict[str, Any]]:
    """Each replica: running or not, streaming or not, and how far behind the primary (bytes
    of WAL not yet replayed, and PostgreSQL's own measure of the replay's lag in seconds)."""
    rows = {}
    if primary.is_running():
        for line in primary.psql(
                "SELECT s.slot_name, coalesce(r.state, 'not connected'), "
                "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn), "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn))::bigint, "
                "coalesce(extract(epoch FROM r.replay_lag), 0) "
                "FROM pg_replication_slots s LEFT JOIN pg_stat_replication r "
                "ON r.pid = s.active_pid WHERE s.slot_name LIKE 'twin\\_replica\\_%'"
                ).splitlines():
            slot, state, behind, lag = line.split("|")
            rows[slot] = {"state": state, "bytes_behind": int(behind or 0),
                          "lag_s": float(lag or 0)}
    return [{"number": r.number, "running": r.cluster.is_running(),
             "url": r.cluster.app_url, "folder": str(r.cluster.pgdata.parent),
             **rows.get(r.slot, {"state": "no slot", "bytes_behind": None, "lag_s": None})}
            for r in replicas(primary)]
