"""Connections: which database, as which role, and who is editing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from twin.errors import DatabaseUnavailable
from twin.settings import Settings
from twin.store.cluster import local_cluster


@dataclass(frozen=True)
class DatabaseUrls:
    """``admin`` owns the schema and migrates; ``app`` is what the service connects as."""

    admin: str
    app: str


def _driver(url: str) -> str:
    """Use psycopg 3 whatever spelling of a PostgreSQL URL was given."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def database_urls(settings: Settings) -> DatabaseUrls:
    """TWIN_DATABASE_URL for both when set, else the local cluster's two roles."""
    if settings.database_url:
        url = _driver(settings.database_url)
        return DatabaseUrls(admin=url, app=url)
    cluster = local_cluster(settings)
    return DatabaseUrls(admin=cluster.admin_url, app=cluster.app_url)


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine whose sessions speak UTC, so times read back the same everywhere."""
    return create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True,
                         connect_args={"options": "-c timezone=UTC"})


def check_connection(engine: Engine) -> None:
    """Fail with a clear message, not a driver traceback, when the database is down."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{exc.orig}; start it with `twin db start` or set TWIN_DATABASE_URL") from None


# The device a bulk load is logged under (the sample twin's): what a load wrote is told
# apart from the edits that followed it.
LOAD_DEVICE = "twin sample"


@dataclass(frozen=True)
class EditContext:
    """Who makes an edit and why: recorded by the triggers in every change row."""

    actor: str
    role: str
    device: str | None = None
    reason: str | None = None
    client_time: datetime | None = None
    edit_id: str | None = None


def set_context(conn: Connection, ctx: EditContext) -> None:
    """Tell the triggers who is editing, for the current transaction only."""
    conn.execute(text("SELECT twin.set_context(:actor, :role, :device, :reason, :client_time, "
                      ":edit_id)"),
                 {"actor": ctx.actor, "role": ctx.role, "device": ctx.device,
                  "reason": ctx.reason, "client_time": ctx.client_time,
                  "edit_id": ctx.edit_id})


@contextmanager
def editing(engine: Engine, ctx: EditContext) -> Iterator[Connection]:
    """One transaction whose writes are logged under ``ctx``; all or nothing."""
    with engine.begin() as conn:
        set_context(conn, ctx)
        yield conn


def libpq_conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL (for psycopg's own pool)."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host
    port = parsed.query.get("port") or parsed.port
    parts = {"dbname": parsed.database, "user": parsed.username, "password": parsed.password,
             "host": host, "port": port}
    return make_conninfo(options="-c timezone=UTC",
                         **{k: str(v) for k, v in parts.items() if v})
