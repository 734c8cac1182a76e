"""`twin db`: the local cluster and the schema."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from twin.cli.common import (
    admin_engine,
    app,
    bars,
    domain_errors,
    load_settings,
    out,
)
from twin.errors import Conflict, TwinError
from twin.settings import Settings
from twin.store.cluster import Cluster, local_cluster
from twin.store.db import check_connection, database_urls, make_engine
from twin.store.replicas import (
    add_replica,
    remove_replica,
    replica,
    standing,
    start_replicas,
    stop_replicas,
)

db_app = typer.Typer(help="The database: a project-local PostgreSQL cluster unless "
                          "TWIN_DATABASE_URL is set.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("start")
def db_start() -> None:
    """Start the local cluster under TWIN_DATA_DIR (initialised on first start)."""
    settings = load_settings()
    with domain_errors():
        if settings.database_url:
            admin_engine(settings)
            out.print("TWIN_DATABASE_URL is set: using that database, nothing to start.")
            return
        cluster = local_cluster(settings)
        started = cluster.start()
        out.print(f"{'started' if started else 'already running'}: {cluster.pgdata} "
                  f"(socket {cluster.socket_dir}, no TCP)")
        for replica in start_replicas(cluster):
            out.print(f"replica {replica.number} started: {replica.cluster.pgdata}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the local cluster."""
    settings = load_settings()
    with domain_errors():
        if settings.database_url:
            out.print("TWIN_DATABASE_URL is set: Twin does not manage that server.")
            return
        cluster = local_cluster(settings)
        for replica in stop_replicas(cluster):  # before what they follow
            out.print(f"replica {replica.number} stopped")
        out.print("stopped" if cluster.stop() else "not running")


@db_app.command("status")
def db_status() -> None:
    """Print the database URL and whether it is up (exit 1 when down)."""
    settings = load_settings()
    with domain_errors():
        url = database_urls(settings).app
        engine = make_engine(url, pool_size=1)
        try:
            check_connection(engine)
            up = True
        except TwinError:
            up = False
        out.print(f"database: {unquote(engine.url.render_as_string(hide_password=True))}")
        out.print(f"status: {'up' if up else 'down'}")
        if not up:
            raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate() -> None:
    """Bring the schema to the current version and register every layer of layers/."""
    from twin.store.migrate import migrate

    settings = load_settings()
    with domain_errors():
        engine = admin_engine(settings)
        migrate(engine, None if settings.database_url else settings.app_role,
                settings.time_zone)
        out.print("schema up to date; layers registered")


@db_app.command("maintain")
def db_maintain() -> None:
    """Upkeep of the history's storage (run it monthly or nightly, e.g. from cron): make this
    and next month's partitions of the versions, and sort each month that is over by place
    once, so asOf queries read few pages. Changes no answer; safe to run at any time."""
    from twin.store.maintain import maintain, unsorted_months

    settings = load_settings()
    with domain_errors():
        engine = admin_engine(settings)
        months = unsorted_months(engine)
        with bars() as stage:
            done = maintain(engine, months, progress=stage("sorting months", len(months)))
        out.print(f"{done.partitions_made} partitions made; "
                  f"{len(done.months_sorted)} months sorted by place"
                  + (f" ({', '.join(done.months_sorted)})" if done.months_sorted else ""))


@db_app.command("backup")
def db_backup(
    kind: Annotated[Literal["full", "diff", "incr"], typer.Option(
        "--type", help="full: the whole cluster (the default); diff: the files changed since "
                       "the last full; incr: since the last backup of any type. A diff or "
                       "incr restores with the backups it builds on.")] = "full",
) -> None:
    """Back the running cluster up (pgBackRest); its WAL is archived from then on.

    A base backup into TWIN_BACKUP_DIR (default .twin/backups; keep it on another disk),
    after which the cluster's WAL is archived there continuously, each finished segment or
    every minute's, so a restore can reach any moment since (`twin db restore --to`). Full
    backups beyond TWIN_BACKUP_RETENTION_FULL are expired, with the WAL only they needed.

    Run it nightly, from cron or a systemd timer (README, Backups).
    """
    from twin.history.backup import repository, take_backup, window

    settings = load_settings()
    with domain_errors():
        repo = repository(settings)
        began = time.monotonic()
        with bars() as stage:
            backup = take_backup(repo, kind, stage)
        out.print(f"backed up: {backup.label} ({backup.kind}), {_mb(backup.size)} of the "
                  f"cluster, {_mb(backup.stored)} stored, in {time.monotonic() - began:.1f} s")
        kept = repo.kept()
        out.print(f"kept: {len(kept)} in {repo.path}; restorable from "
                  f"{repo.moment(window(kept))} to now")


@db_app.command("backups")
def db_backups(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The backups kept, and how far back a restore can go.

    From the oldest kept backup's end to now (the last minute's changes may still be on
    their way to the archive)."""
    from twin.history.backup import repository, window

    settings = load_settings()
    with domain_errors():
        repo = repository(settings)
        kept = repo.kept()
        oldest = repo.moment(window(kept)) if kept else None
    if as_json:
        out.print_json(json.dumps({
            "repository": str(repo.path), "retention_full": repo.retention_full,
            "restorable_from": oldest,
            "backups": [{"label": b.label, "type": b.kind, "began": repo.moment(b.began),
                         "ended": repo.moment(b.ended), "size": b.size, "stored": b.stored}
                        for b in kept]}))
        return
    if not kept:
        out.print(f"no backups in {repo.path} yet: take one with `twin db backup`")
        return
    zone = ZoneInfo(settings.time_zone)
    table = Table(title=f"备份 Backups in {repo.path} ({repo.retention_full} full kept)")
    table.add_column("标签\nlabel", no_wrap=True)
    table.add_column("类型\ntype")
    table.add_column(f"结束 ended\n{settings.time_zone}", no_wrap=True)
    for heading in ("用时\ntook", "大小\nsize", "存储\nstored"):
        table.add_column(heading, justify="right", no_wrap=True)
    for b in kept:
        table.add_row(b.label, b.kind, f"{b.ended.astimezone(zone):%Y-%m-%d %H:%M:%S}",
                      f"{(b.ended - b.began).total_seconds():.0f} s", _mb(b.size),
                      _mb(b.stored))
    out.print(table)
    out.print(f"可恢复 restorable: any moment from {oldest} to now")


@db_app.command("restore")
def db_restore(
    to: Annotated[str | None, typer.Option(
        "--to", help="The moment to restore, RFC 3339 with its offset, e.g. "
                     "2026-06-30T18:00:00+08:00, within `twin db backups`' window; default: "
                     "as late as archived.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Restore over the running cluster: archive its WAL up to now, stop "
                        "it, restore the files that differ (--delta), start it.")] = False,
) -> None:
    """Restore the cluster as it was at a moment (--to), from TWIN_BACKUP_DIR.

    The newest backup that ended by then, and the archived WAL replayed up to the moment;
    then the cluster runs again.

    A running cluster is never overwritten without --force. It also rebuilds a lost cluster
    (a new machine, TWIN_BACKUP_DIR on the disk that survived).
    """
    from twin.history.backup import repository, restore
    from twin.times import parse_time

    settings = load_settings()
    with domain_errors():
        moment = parse_time("--to", to)
        repo = repository(settings)
        began = time.monotonic()
        with bars() as stage:
            done = restore(repo, moment, force, stage)
        what = (f"{done.features:,} features, {done.changes:,} changes" if done.changes is
                not None else "no twin in the database")
        last = f", the last at {repo.moment(done.last_change)}" if done.last_change else ""
        out.print(f"restored from backup {done.backup} to "
                  f"{repo.moment(moment) if moment else 'the newest archived moment'} in "
                  f"{time.monotonic() - began:.1f} s: {what}{last}; the cluster is running")


@db_app.command("verify-backup")
def db_verify_backup() -> None:
    """Restore the newest backup into a scratch cluster and compare it with the twin.

    The scratch cluster is a temporary folder beside the cluster (room for a copy of the
    twin) on another socket. Compared: the features as of the backup's end (their content
    hash), and the log (the same change ids up to then, no gap). Exit 1 when they differ."""
    from twin.history.backup import repository, verify_newest

    settings = load_settings()
    with domain_errors():
        repo = repository(settings)
        began = time.monotonic()
        with bars() as stage:
            check = verify_newest(repo, stage)
    backup = check.backup
    out.print(f"backup {backup.label} ({backup.kind}), ended {repo.moment(backup.ended)}, "
              f"restored and compared in {time.monotonic() - began:.1f} s")
    same = "the same" if check.live_hash == check.copy_hash else "[bold red]DIFFERENT[/]"
    out.print(f"features as of its end: {check.features:,}, content hash {same} "
              f"(twin {check.live_hash}, backup {check.copy_hash})")
    out.print(f"log: {check.changes:,} changes in the backup, "
              + ("none missing, none unknown to the twin" if not check.lost + check.unknown
                 else f"[bold red]{len(check.lost)} lost[/] ({_ids(check.lost)}), "
                      f"[bold red]{len(check.unknown)} unknown to the twin[/] "
                      f"({_ids(check.unknown)})"))
    if check.in_flight:
        out.print(f"in flight at its end (begun before, committed after; rightly not in it, "
                  f"their features left out of the hash): {_ids(check.in_flight)}")
    out.print("verified" if check.ok else "[bold red]the backup does not match the twin[/]")
    if not check.ok:
        raise typer.Exit(1)


replica_app = typer.Typer(help="Read replicas: streaming standbys of the local cluster "
                               "(PostgreSQL's own replication), each in its own folder with "
                               "its own socket.", no_args_is_help=True)
db_app.add_typer(replica_app, name="replica")


def _local(settings: Settings) -> Cluster:
    if settings.database_url:
        raise Conflict("TWIN_DATABASE_URL is set: Twin does not manage that server; make its "
                       "replicas with your PostgreSQL's own tools")
    return local_cluster(settings)


@replica_app.command("add")
def replica_add() -> None:
    """Copy the running cluster (pg_basebackup, a replication slot of its own) and start the
    copy as a standby that streams every change; prints its read-only URL."""
    settings = load_settings()
    with domain_errors():
        primary = _local(settings)
        with bars() as stage:
            made = add_replica(primary, stage("copying the cluster", 100))
    out.print(f"replica {made.number} streaming: {made.cluster.pgdata}")
    out.print(f"read-only URL: {made.cluster.app_url}")
    out.print("to read from it: add that URL to TWIN_REPLICA_URLS (comma-separated) and "
              "start twin serve again")


@replica_app.command("list")
def replica_list(as_json: Annotated[bool, typer.Option(
        "--json", help="As JSON (for scripts and monitoring).")] = False) -> None:
    """The replicas: running, streaming, and how far behind the cluster they are."""
    settings = load_settings()
    with domain_errors():
        rows = standing(_local(settings))
    if as_json:
        out.print_json(json.dumps({"replicas": rows}))
        return
    if not rows:
        out.print("no replicas: `twin db replica add` makes one")
        return
    table = Table(title="只读副本 Read replicas")
    for heading in ("#", "状态 state", "落后 behind (bytes)", "延迟 lag (s)", "URL"):
        table.add_column(heading)
    for row in rows:
        table.add_row(str(row["number"]), row["state"] if row["running"] else "stopped",
                      "" if row["bytes_behind"] is None else f"{row['bytes_behind']:,}",
                      "" if row["lag_s"] is None else f"{row['lag_s']:.3f}", row["url"])
    out.print(table)


@replica_app.command("remove")
def replica_remove(number: Annotated[int, typer.Argument(
        help="The replica's number, as `twin db replica list` shows it.")]) -> None:
    """Stop a replica and delete it with its replication slot (its readers lose it)."""
    settings = load_settings()
    with domain_errors():
        primary = _local(settings)
        remove_replica(primary, replica(primary, number))
    out.print(f"replica {number} removed")


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _ids(ids: list[int]) -> str:
    """A few change ids, for a message."""
    return ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10
                                             else "")
