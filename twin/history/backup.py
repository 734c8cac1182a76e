"""Backups with point-in-time recovery of the project-local cluster: pgBackRest's base backups
and PostgreSQL's own WAL archiving, so any moment since the oldest kept backup can be had back.

Twin writes pgBackRest's configuration from its settings (``pgbackrest.conf`` beside the
cluster) and runs pgBackRest as the user who runs the server, whose files it reads and writes.
The cluster archives its WAL from its first start (twin.store.cluster); the first backup
points ``archive_command`` at pgBackRest, so from then on a finished WAL segment, or every
minute's (archive_timeout), is in the repository.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from twin.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound, Problem, TwinError
from twin.features.reads import source
from twin.settings import Settings
from twin.store.cluster import Cluster, local_cluster
from twin.store.db import make_engine
from twin.store.sqlfiles import sql

STANZA = "twin"
BackupKind = Literal["full", "diff", "incr"]
# ``stage(label, total)``: a progress bar, and the callback that advances it
Stages = Callable[[str, int], Callable[[int], None]]

# pgBackRest's detail lines end each copied file with its share of the whole: "(8KB, 12.34%)"
_PERCENT = re.compile(r", (\d+(?:\.\d+)?)%\)\s*$")


class BackupFailed(TwinError):
    """pgBackRest or PostgreSQL could not back up, restore or check; the message says why."""


@dataclass(frozen=True)
class Backup:
    """One kept backup. pgBackRest keeps whole seconds, rounded down: the backup was
    consistent by the second after its stop, which is when it counts as ended."""

    label: str
    kind: str
    began: datetime
    ended: datetime
    size: int  # the cluster's bytes it holds
    stored: int  # its bytes in the repository (compressed; an incr or diff: its own only)

    @classmethod
    def from_info(cls, entry: dict[str, Any]) -> Backup:
        stamp = entry["timestamp"]
        return cls(entry["label"], entry["type"], datetime.fromtimestamp(stamp["start"], UTC),
                   datetime.fromtimestamp(stamp["stop"], UTC) + timedelta(seconds=1),
                   entry["info"]["size"], entry["info"]["repository"]["delta"])


@dataclass(frozen=True)
class Repository:
    """One cluster's pgBackRest set-up: its configuration file and its repository."""

    cluster: Cluster
    path: Path
    retention_full: int
    time_zone: str  # the subdistrict's, in which moments are shown

    def moment(self, at: datetime) -> str:
        """``at`` in RFC 3339 in the subdistrict's time zone, as --to takes it."""
        return at.astimezone(ZoneInfo(self.time_zone)).isoformat(timespec="seconds")

    @property
    def config(self) -> Path:
        return self.cluster.pgdata.parent / "pgbackrest.conf"

    @property
    def archive_command(self) -> str:
        return (f"pgbackrest --config={shlex.quote(str(self.config))} --stanza={STANZA} "
                "archive-push %p")

    def write_config(self) -> None:
        """pgbackrest.conf from the settings, written anew by every command (a changed
        setting takes effect at the next); logs and locks beside it, this cluster's own."""
        self.cluster.prepare_dirs()
        own = self.cluster.pgdata.parent / "pgbackrest"
        own.mkdir(exist_ok=True)
        cluster = self.cluster
        self.config.write_text(
            "# Written by Twin from its settings (TWIN_BACKUP_*) at every `twin db backup`, "
            "restore or verify-backup:\n# an edit here is overwritten.\n"
            f"[global]\nrepo1-path={self.path}\nrepo1-retention-full={self.retention_full}\n"
            f"log-path={own}\nlock-path={own}\n"
            "# a checkpoint at once, not at the next one; lz4: the least CPU per byte; a\n"
            "# process per CPU to copy, compress and restore files\n"
            f"start-fast=y\ncompress-type=lz4\nprocess-max={os.cpu_count() or 1}\n\n"
            f"[{STANZA}]\npg1-path={cluster.pgdata}\npg1-socket-path={cluster.socket_dir}\n"
            f"pg1-port={cluster.port}\npg1-user=postgres\n", encoding="utf-8")
        self.config.chmod(0o640)
        for path in (own, self.config):
            self._own(path)

    def prepare(self) -> None:
        """The repository's folder, which the server's user writes (it archives the WAL)."""
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._own(self.path)
        if self.cluster.run_as and subprocess.run(  # noqa: S603
                self.cluster.as_owner(["test", "-w", str(self.path), "-a", "-x",
                                       str(self.path)]), check=False).returncode != 0:
            raise BackupFailed(
                f"the backup folder {self.path} (TWIN_BACKUP_DIR) is not writable by the "
                f"{self.cluster.run_as} user, who runs the cluster and pgBackRest: "
                f"`chown {self.cluster.run_as}: {self.path}`, and let it reach the folder")

    def _own(self, path: Path) -> None:
        if self.cluster.run_as:
            shutil.chown(path, self.cluster.run_as, self.cluster.run_as)

    def run(self, *args: str, progress: Callable[[int], None] | None = None,
            level: str = "warn") -> str:
        """pgBackRest's output of one command, run as the server's user; ``progress`` is
        given the per-mille done as its detail lines tell it. A failure raises its ERROR."""
        lines: list[str] = []
        done = 0
        try:
            for line in self.cluster.stream([
                    _pgbackrest(), f"--config={self.config}", f"--stanza={STANZA}",
                    f"--log-level-console={'detail' if progress else level}", *args]):
                lines.append(line)
                share = _PERCENT.search(line)
                if progress and share:
                    now = round(float(share.group(1)) * 10)
                    progress(now - done)
                    done = now
        except DatabaseUnavailable:
            output = "\n".join(lines)
            error = output[output.find("ERROR:"):] if "ERROR:" in output else output[-800:]
            raise BackupFailed(f"pgBackRest {args[-1]} failed: {' '.join(error.split())}"
                               f" (its log: {self.cluster.pgdata.parent / 'pgbackrest'})"
                               ) from None
        output = "\n".join(lines)
        return output

    def kept(self) -> list[Backup]:
        """The backups kept, oldest first; none when the repository has none (yet)."""
        self.write_config()
        info = json.loads(self.run("--output=json", "info", level="error"))
        return [Backup.from_info(entry) for stanza in info for entry in stanza["backup"]]


def _pgbackrest() -> str:
    found = shutil.which("pgbackrest")
    if not found:
        raise BackupFailed("pgBackRest is not installed: `apt-get install pgbackrest` (`make "
                           "run` and `make test` install it)")
    return found


def repository(settings: Settings) -> Repository:
    """The local cluster's backups as the settings say; a database of one's own
    (TWIN_DATABASE_URL) is backed up where it runs, by its own tools."""
    if settings.database_url:
        raise BackupFailed("TWIN_DATABASE_URL is set: back that database up where it runs "
                           "(e.g. with pgBackRest there); Twin backs up its own cluster only")
    cluster = local_cluster(settings)
    return Repository(cluster, settings.backup_dir or cluster.pgdata.parent / "backups",
                      settings.backup_retention_full, settings.time_zone)


def window(kept: list[Backup]) -> datetime:
    """The oldest moment a restore can reach (to now): the end of the oldest kept backup."""
    if not kept:
        raise NotFound("no backups kept yet: take one with `twin db backup`")
    return kept[0].ended


def take_backup(repo: Repository, kind: BackupKind, stage: Stages) -> Backup:
    """One backup of the running cluster; pgBackRest then expires what retention lets go.

    Refused, with nothing written, when the cluster is down or was started without WAL
    archiving (by a Twin before backups: PostgreSQL turns archiving on only at a start)."""
    cluster = repo.cluster
    _pgbackrest()
    if not cluster.is_running():
        raise BackupFailed("the cluster is not running: `twin db start`, then back it up")
    if cluster.psql("SHOW archive_mode") != "on":
        raise BackupFailed(
            "WAL archiving is off in the running cluster (it was started before Twin turned "
            "it on, which PostgreSQL does only at a start): restart it once, `twin db stop && "
            "twin db start`, then `twin db backup`")
    repo.prepare()
    repo.write_config()
    if cluster.psql("SHOW archive_command") != repo.archive_command:
        quoted = repo.archive_command.replace("'", "''")
        cluster.psql(f"ALTER SYSTEM SET archive_command = '{quoted}'")
        cluster.psql("SELECT pg_reload_conf()")
    repo.run("stanza-create")
    repo.run(f"--type={kind}", "backup", progress=stage(f"backing up ({kind})", 1000))
    return repo.kept()[-1]


@dataclass(frozen=True)
class Restored:
    backup: str  # the label of the backup the restore began from
    to: datetime | None  # None: the newest archived moment
    features: int | None  # None: the database holds no twin
    changes: int | None
    last_change: datetime | None


def restore(repo: Repository, to: datetime | None, force: bool, stage: Stages) -> Restored:
    """The cluster as it was at ``to`` (None: as late as archived), from the newest backup
    that ended by then and the WAL after it; the cluster runs again afterwards.

    Refused, with nothing changed, when ``to`` is outside the window (the oldest backup's end
    to now) or the cluster runs and ``force`` is not given. With ``force`` the running
    cluster's WAL is archived up to now (pgBackRest's check), then it stops, and the restore
    changes only the files that differ (--delta)."""
    cluster = repo.cluster
    now = datetime.now(UTC)
    kept = repo.kept()
    oldest = window(kept)
    if to is not None and not oldest <= to <= now:
        raise InvalidInput(
            f"--to {to.isoformat()} is outside the window the backups cover: from "
            f"{repo.moment(oldest)} (the oldest kept backup's end) to now "
            f"({repo.moment(now)}); nothing was changed",
            [Problem("--to", to.isoformat(), "outside the restorable window",
                     "不在可恢复的时间范围内")])
    if cluster.is_running():
        if not force:
            raise Conflict(
                f"the twin's cluster is running ({cluster.pgdata}): a restore replaces it, so "
                "nothing was changed. Stop it first (`twin db stop`), or add --force, which "
                "archives its WAL up to now, stops it, restores over it and starts it again")
        repo.run("check")
        cluster.stop()
    # the newest backup that ended by then, named: pgBackRest's own choice reads no
    # fractions of a second; PostgreSQL's target takes microseconds
    start = kept[-1] if to is None else [b for b in kept if b.ended <= to][-1]
    target = [] if to is None else [
        "--type=time", f"--target={to.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f+00}",
        "--target-action=promote"]
    delta = ["--delta"] if cluster.is_initialised() else []
    try:
        repo.run(f"--set={start.label}", *delta, *target, "restore",
                 progress=stage("restoring files", 1000))
    except BackupFailed as exc:
        raise BackupFailed(f"{exc.message}. The cluster is stopped: run `twin db restore` "
                           "again once the cause is fixed") from None
    replay = stage("replaying the WAL", 1)
    try:
        cluster.start()
    except TwinError as exc:
        raise BackupFailed(
            f"the restored cluster did not start: {cluster.log_errors()}. "
            + ("The WAL archive may end before --to (the last minute before the cluster "
               "stopped is not archived): restore to an earlier moment, or without --to"
               if to else "") + f" (log: {cluster.logfile})") from exc
    replay(1)
    return Restored(start.label, to, *_twin_counts(cluster))


def _twin_counts(cluster: Cluster) -> tuple[int | None, int | None, datetime | None]:
    """Features, changes and the last change's time, when the database holds a twin."""
    if cluster.psql("SELECT to_regclass('twin.changes') IS NOT NULL", cluster.dbname) != "t":
        return None, None, None
    features, changes, last = cluster.psql(
        "SELECT (SELECT count(*) FROM twin.features), count(*), "
        "extract(epoch FROM max(server_time)) FROM twin.changes", cluster.dbname).split("|")
    return (int(features), int(changes),
            datetime.fromtimestamp(float(last), UTC) if last else None)


@dataclass(frozen=True)
class Verification:
    """The newest backup restored into a scratch cluster, compared with the live twin as of
    the backup's end."""

    backup: Backup
    features: int  # as of the backup's end, those changed in flight then left out
    live_hash: str
    copy_hash: str
    changes: int  # in the copy's log
    lost: list[int]  # committed by the backup's end, yet not in the copy
    unknown: list[int]  # in the copy, not in the live log
    in_flight: list[int]  # begun by the end, committed after it: rightly not in the copy

    @property
    def ok(self) -> bool:
        return self.live_hash == self.copy_hash and not self.lost and not self.unknown


def verify_newest(repo: Repository, stage: Stages) -> Verification:
    """Restore the newest backup into a scratch cluster (a temporary folder beside the
    cluster, its own socket; never archiving, so it writes nothing into the repository) and
    compare it with the running twin: the features as of the backup's end, by content hash,
    and the log, whose ids must be the live ones up to then with no gap."""
    live = repo.cluster
    if not live.is_running():
        raise BackupFailed("the cluster is not running: `twin db start`; verify-backup "
                           "compares the backup with it")
    kept = repo.kept()
    window(kept)  # none kept: nothing to verify
    backup = kept[-1]
    with tempfile.TemporaryDirectory(prefix="verify-", dir=live.pgdata.parent) as scratch:
        copy = live.scratch(Path(scratch))
        copy.prepare_dirs()
        repo.run(f"--set={backup.label}", "--type=immediate", "--target-action=pause",
                 f"--pg1-path={copy.pgdata}", "restore",
                 progress=stage("restoring a copy", 1000))
        started = stage("starting the copy", 1)
        with _started(copy):
            started(1)
            compared = stage("comparing with the twin", 1)
            result = _compare(live, copy, backup)
            compared(1)
    return result


@contextmanager
def _started(copy: Cluster) -> Iterator[None]:
    """The restored copy running, paused at the backup's end (read-only), then stopped; a
    small page cache, as it is read once."""
    try:
        copy.start("-c archive_mode=off -c shared_buffers=128MB")
        yield
    finally:
        copy.stop()


def _compare(live: Cluster, copy: Cluster, backup: Backup) -> Verification:
    with _connect(live) as on_live, _connect(copy) as on_copy:
        held = _ids(on_copy, "SELECT id FROM twin.changes")
        # every live change the copy could hold: up to its newest id, or begun by the end
        seen = _ids(on_live, "SELECT id FROM twin.changes WHERE id <= :top OR "
                             "server_time < :end", top=max(held, default=0), end=backup.ended)
        lost, in_flight = _missing(on_live, on_copy, sorted(seen - held))
        skip = list(on_live.execute(text(
            "SELECT DISTINCT feature_id FROM twin.changes "
            "WHERE id = ANY(CAST(:ids AS bigint[]))"), {"ids": in_flight}).scalars())
        live_hash, features = _features_as_of(on_live, backup.ended, skip)
        copy_hash, _ = _features_as_of(on_copy, backup.ended, skip)
    return Verification(backup, features, live_hash, copy_hash, len(held), lost,
                        sorted(held - seen), in_flight)


def _missing(on_live: Connection, on_copy: Connection, ids: list[int]
             ) -> tuple[list[int], list[int]]:
    """Live changes the copy lacks, as lost (their transaction had committed by the backup's
    end: the copy says so) and in flight (not yet committed then, rightly not in it)."""
    txs: dict[int, str] = dict(on_live.execute(text(
        "SELECT id, tx::text FROM twin.changes WHERE id = ANY(CAST(:ids AS bigint[]))"),
        {"ids": ids}).tuples().all())
    committed = set(on_copy.execute(text(
        "SELECT t FROM unnest(CAST(:txs AS text[])) AS t "  # a later one: not yet begun there
        "WHERE CASE WHEN t::xid8 < pg_snapshot_xmax(pg_current_snapshot()) "
        "THEN pg_xact_status(t::xid8) = 'committed' END"), {"txs": sorted(set(txs.values()))}
        ).scalars())
    return ([i for i in ids if txs[i] in committed],
            [i for i in ids if txs[i] not in committed])


@contextmanager
def _connect(cluster: Cluster) -> Iterator[Connection]:
    engine = make_engine(cluster.admin_url, pool_size=1)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _ids(conn: Connection, query: str, **params: Any) -> set[int]:
    return set(conn.execute(text(query), params).scalars())


def _features_as_of(conn: Connection, moment: datetime, skip: list[int]) -> tuple[str, int]:
    """The content hash of `twin stats` and the count of the features as of ``moment``
    (the asOf reads' versions), leaving out the features ``skip`` names."""
    params: dict[str, Any] = {"skip": skip}
    features = f"{source(moment, params)} WHERE f.id <> ALL(%(skip)s::bigint[])"
    digest = sql("content_hash").replace("FROM twin.features", f"FROM {features}")
    count = conn.exec_driver_sql(f"SELECT count(*) FROM {features}",  # noqa: S608 (values bound)
                                 params).scalar_one()
    return conn.exec_driver_sql(digest, params).scalar_one(), count
