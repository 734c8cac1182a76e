"""`twin db`: the local cluster and the schema."""

from __future__ import annotations

from urllib.parse import unquote

import typer

from twin.cli.common import (
    admin_engine,
    app,
    bars,
    domain_errors,
    load_settings,
    out,
)
from twin.errors import TwinError
from twin.store.cluster import local_cluster
from twin.store.db import check_connection, database_urls, make_engine

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


@db_app.command("stop")
def db_stop() -> None:
    """Stop the local cluster."""
    settings = load_settings()
    with domain_errors():
        if settings.database_url:
            out.print("TWIN_DATABASE_URL is set: Twin does not manage that server.")
            return
        stopped = local_cluster(settings).stop()
        out.print("stopped" if stopped else "not running")


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
