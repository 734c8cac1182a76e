"""What every command shares: the app, its consoles, settings and engines, domain errors
printed as messages, progress bars and the labels of groupings."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from twin import __version__
from twin.errors import TwinError
from twin.settings import Settings
from twin.store.db import check_connection, database_urls, make_engine
from twin.store.layerspecs import refresh_layers
from twin.users import User

app = typer.Typer(help="Twin: a digital twin of a city subdistrict on PostGIS.",
                  no_args_is_help=True, add_completion=False)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Print a domain error as a clear message and exit 1, never as a traceback."""
    try:
        yield
    except TwinError as exc:
        err.print(f"[bold red]error:[/] {exc.message}")
        for problem in exc.problems:
            err.print(f"  - {problem.field} = {problem.value!r}: {problem.reason} "
                      f"{problem.reason_zh}")
        raise typer.Exit(1) from None
    except DBAPIError as exc:  # the database refused: say what it said, not where
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        hint = ("; the database's schema is older than this Twin: run `twin db migrate`"
                if getattr(exc.orig, "sqlstate", None) in SCHEMA_MISSING else "")
        err.print(f"[bold red]error:[/] the database refused: {reason}{hint}")
        raise typer.Exit(1) from None


# undefined table, function, column: a database not migrated to this version
SCHEMA_MISSING = ("42P01", "42883", "42703")


def load_settings() -> Settings:
    """The settings from the environment; a bad one is named by its variable, and the
    command stops (exit 2) before it touches anything."""
    try:
        return Settings()
    except ValidationError as exc:
        for problem in exc.errors():
            where = "_".join(str(part) for part in problem["loc"]).upper()
            name = f"TWIN_{where}" if where else "settings"
            value = f"={problem['input']!r}" if where else ""
            err.print(f"[bold red]error:[/] {name}{value}: "
                      f"{problem['msg'].removeprefix('Value error, ')}")
        raise typer.Exit(2) from None


def command_engine(url: str) -> Engine:
    """A small engine for one command, after checking the database answers."""
    engine = make_engine(url, pool_size=1)
    check_connection(engine)
    with engine.connect() as conn:  # the layers admins declared in the running twin too
        refresh_layers(conn)
    return engine


def admin_engine(settings: Settings) -> Engine:
    return command_engine(database_urls(settings).admin)


def staff() -> User:
    """Who a command acts as where it needs an admin: one named after the shell's user."""
    return User(0, os.environ.get("USER", "twin"), "admin", ())


def app_engine(settings: Settings) -> Engine:
    return command_engine(database_urls(settings).app)


@contextmanager
def bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Progress bars for long commands: ``stage(label, total)`` returns an advance callback."""
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as progress:
        def stage(label: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(label, total=total)
            return lambda n: progress.advance(task, n)
        yield stage


# The twin as it was at a moment: every command reading it may ask.
AsOfOption = Annotated[str | None, typer.Option(
    "--as-of", help="The twin as it was then: an RFC 3339 time with its offset, e.g. "
                    "2026-03-31T18:00:00+08:00.")]



# Column headings of a grouping, in Chinese and English.
GROUP_LABELS = {"layer": "图层 layer", "grid": "微网格 micro-grid",
                 "area": "居民区 residential area", "subdistrict": "街道 subdistrict",
                 "actor": "操作人 actor"}



@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
          ) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()
